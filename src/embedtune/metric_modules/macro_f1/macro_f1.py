"""Macro-F1: the unweighted mean of per-class F1 over the classes seen in references or predictions."""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Macro-F1 over classes present in references or predictions (sklearn's average='macro')."
_KWARGS = "predictions: list of int class ids; references: list of int class ids."


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        scores = []
        for c in np.union1d(predictions, references):
            tp = np.sum((predictions == c) & (references == c))
            denom = np.sum(predictions == c) + np.sum(references == c)
            scores.append(2.0 * tp / denom if denom else 0.0)
        return {"macro_f1": float(np.mean(scores))}
