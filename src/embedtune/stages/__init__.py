"""One module per DVC stage, each with one ``run(...)`` that reads the stage's declared inputs and writes all
of its outputs (nothing else writes them):

- ``prepare``: canonical splits, data card and budget subsets → ``data/prepared/<task>/``
- ``shift``: shift test sets from the clean test split → ``data/shift/<task>/``
- ``embed``: frozen-backbone embedding cache → ``data/embeddings/<task>/``
- ``probe``: linear probe and the classic floor at every budget × seed (notebook 01)
- ``search``: a tuned method's learning-rate search at the pilot budget
- ``finetune``: a tuned method's runs at every budget × seed (notebook 02)
- ``compare``: paired comparisons, decision, shift drops and figures of one task (notebook 03)
- ``summary``: the across-task page, index, README blocks and environment record (notebook 04)

`dvc.yaml` names either the module (``python -m embedtune.stages.<name>``) or the notebook whose first code
cell calls its ``run``. The layers below (data, backbones, probe, engine, runs, compare, findings, reports)
never import a stage.
"""

STAGES = ("prepare", "shift", "embed", "probe", "search", "finetune", "compare", "summary")
