"""AUROC from class probabilities: binary (score of class 1) or macro one-vs-rest for several classes.

Classes absent from the references are left out of the one-vs-rest average and reported in
`auroc_skipped_classes`; with a single class present the AUROC is undefined and returned as None.
"""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Area under the ROC curve (Mann-Whitney U with tie correction), macro one-vs-rest."
_KWARGS = "prediction_scores: list of per-class probability lists; references: list of int class ids."


def _binary_auc(scores, positives):
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties (1-based)
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class Auroc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"prediction_scores": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Value("int64")}))

    def _compute(self, prediction_scores, references):
        scores = np.asarray(prediction_scores, dtype=np.float64)
        references = np.asarray(references)
        if scores.shape[1] == 2:
            return {"auroc": _binary_auc(scores[:, 1], references == 1), "auroc_skipped_classes": []}
        aucs = []
        skipped = []
        for c in range(scores.shape[1]):
            auc = _binary_auc(scores[:, c], references == c)
            if auc is None:
                skipped.append(c)
            else:
                aucs.append(auc)
        return {"auroc": float(np.mean(aucs)) if aucs else None, "auroc_skipped_classes": skipped}
