"""Accuracy: the fraction of predictions equal to the reference label (offline `evaluate` module)."""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy = mean(predictions == references)."
_KWARGS = "predictions: list of int class ids; references: list of int class ids."


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        return {"accuracy": float((predictions == references).mean())}
