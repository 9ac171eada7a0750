"""Micro- and macro-F1 for multi-label tasks as LexGLUE computes them.

LexGLUE (Chalkidis et al., 2022) appends an extra "none" column that is 1 when a row has no label,
to both predictions and references, then computes sklearn-style micro and macro F1 over L+1 columns.
"""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "LexGLUE multi-label micro/macro F1 with an extra 'none' label."
_KWARGS = "predictions, references: lists of 0/1 lists of length L (multi-hot)."


def _with_none(matrix):
    matrix = np.asarray(matrix, dtype=np.int64)
    none = (matrix.sum(axis=1) == 0).astype(np.int64)[:, None]
    return np.concatenate([matrix, none], axis=1)


class LexglueF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64")),
                                        "references": datasets.Sequence(datasets.Value("int64"))}))

    def _compute(self, predictions, references):
        pred = _with_none(predictions)
        ref = _with_none(references)
        tp = (pred & ref).sum(axis=0)
        fp = (pred & (1 - ref)).sum(axis=0)
        fn = ((1 - pred) & ref).sum(axis=0)
        denom = 2 * tp + fp + fn
        per_label = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
        micro = 2 * tp.sum() / micro_denom if micro_denom else 0.0
        return {"micro_f1": float(micro), "macro_f1": float(per_label.mean())}
