"""Balanced accuracy: the mean recall over the classes present in the references."""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Balanced accuracy = mean over reference classes of recall."
_KWARGS = "predictions: list of int class ids; references: list of int class ids."


class BalancedAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        recalls = [np.mean(predictions[references == c] == c) for c in np.unique(references)]
        return {"balanced_accuracy": float(np.mean(recalls))}
