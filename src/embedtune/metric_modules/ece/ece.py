"""Expected calibration error of the top-class confidence, equal-width bins (Guo et al., 2017)."""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = "ECE = sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)| over equal-width confidence bins."
_KWARGS = "prediction_scores: list of per-class probability lists; references: list of int; n_bins: int (15)."


class Ece(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"prediction_scores": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Value("int64")}))

    def _compute(self, prediction_scores, references, n_bins=15):
        scores = np.asarray(prediction_scores, dtype=np.float64)
        references = np.asarray(references)
        confidence = scores.max(axis=1)
        correct = scores.argmax(axis=1) == references
        # bin b holds confidences in (b/n, (b+1)/n]; confidence 0 goes to bin 0
        bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
        ece = 0.0
        for b in range(n_bins):
            mask = bins == b
            if mask.any():
                ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
        return {"ece": float(ece)}
