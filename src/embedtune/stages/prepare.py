"""Stage `prepare`: canonical splits, data card and the nested budget subsets of one task."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..data import budget_subsets, build_prepared, write_prepared
from ..io import write_json
from ..params import Params
from ..paths import TaskPaths


def public_card(card: dict[str, Any], *, data_root: str | Path) -> dict[str, Any]:
    """The data card as committed: source files relative to ``data_root`` (no path of this machine)."""
    root = Path(data_root).resolve()

    def relative(path: str) -> str:
        resolved = Path(path).resolve()
        if resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix()
        parts = resolved.parts  # a file inside an installed wheel: named from its site-packages folder
        return "/".join(parts[parts.index("site-packages"):]) if "site-packages" in parts else resolved.name

    out = dict(card)
    if isinstance(out.get("files"), dict):
        out["files"] = {k: relative(str(v)) for k, v in out["files"].items()}
    if isinstance(out.get("file"), str):
        out["file"] = relative(out["file"])
    return out


def run(params: Params, task: str, *, root: Path = Path(".")) -> dict[str, Any]:
    """Write ``data/prepared/<task>/`` (splits, ``card.json``, ``subsets.json``) and a copy of the data card in
    ``results/<task>/card.json`` (committed: the probe page's read mode shows it without the DVC cache);
    return the data card.

    Everything is computed and validated in memory first (the budgets against the train split included),
    then the folder is written in one swap (`data.write_prepared`): bad input leaves the old folder as it was.
    ``subsets.json`` lists the seeds of each budget: ``seeds_by_size`` (the tuned methods run the seeds listed
    there; the probe and classic run every seed at every size)."""
    paths = TaskPaths(root, task)
    scale = params.scale
    data, card = build_prepared(task, params.task(task), data_root=params.data_root,
                                max_train=scale.data.max_train, max_eval=scale.data.max_eval)
    n_train = len(data.splits["train"])
    b = scale.budgets
    subsets = budget_subsets(data.splits["train"].y, sizes=(*b.sizes, *b.probe_only_sizes, *b.single_seed_sizes),
                             seeds=b.seeds)

    def resolve(sizes: tuple[int | str, ...]) -> list[int]:
        return sorted({n_train if s == "all" else int(s) for s in sizes})

    shared = resolve(b.sizes)
    single = [s for s in resolve(b.single_seed_sizes) if s not in shared]
    seeds_by_size = {str(s): list(b.seeds) for s in shared}
    for given in b.single_seed_sizes:  # the larger budgets: the first `seeds_at[size]` seeds (default 1)
        size = n_train if given == "all" else int(given)
        if size not in shared:
            seeds_by_size[str(size)] = list(b.seeds[:b.seeds_at.get(str(given), 1)])
    card = write_prepared(data, card, paths.prepared, extra_json=lambda card: {paths.subsets.name: {
        "sizes": sorted(int(s) for s in next(iter(subsets.values()))), "shared_sizes": shared,
        "single_seed_sizes": single, "tuned_sizes": sorted({*shared, *single}), "n_train": n_train,
        "seeds": list(b.seeds), "seeds_by_size": seeds_by_size, "subsets": subsets,
        "data_checksum": card["checksum"]}})
    write_json(paths.results / "card.json", public_card(card, data_root=params.data_root))
    print(f"{task}: counts {card['counts']}, duplicates removed {card['duplicates_removed']}")
    return card


if __name__ == "__main__":
    from ..entry import stage_main

    sys.exit(stage_main(run, doc=__doc__))
