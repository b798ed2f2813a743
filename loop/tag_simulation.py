"""The simulator's multi-label parts: annotators who miss or add tags, and learning-curve points on
tag sets (``loop.simulator`` uses them for a dataset whose CSV has a ``labels`` column)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acquisition.services.gate import tag_metrics


@dataclass
class SimulatedTagger:
    """Answers with the true tag set, except that each true tag is left out with probability
    ``miss_rate`` and wrong tags are added: ``add_rate`` of them per answer on average, spread
    uniformly over the tags the item does not carry."""

    user: object
    miss_rate: float
    add_rate: float
    n_labels: int
    rng: np.random.Generator

    def answer(self, truth: np.ndarray) -> list[int]:
        present = np.asarray(truth, dtype=bool)
        keep = present & (self.rng.random(self.n_labels) >= self.miss_rate)
        absent = ~present
        p_add = min(1.0, self.add_rate / max(int(absent.sum()), 1))
        added = absent & (self.rng.random(self.n_labels) < p_add)
        return np.flatnonzero(keep | added).tolist()


def tag_point(model, version, test_vectors: np.ndarray, test_tags: np.ndarray, categories: list[str]) -> dict:
    """The current model's figures on the test split's tag sets: ``accuracy`` is subset accuracy,
    with micro- and macro-F1 and Hamming loss (``acquisition.services.gate.tag_metrics``)."""
    figures = tag_metrics(model, np.asarray(test_tags), test_vectors, categories, version)
    return {
        "accuracy": figures["accuracy"],
        "macro_f1": figures["macro_f1"],
        "micro_f1": figures["micro_f1"],
        "hamming_loss": figures["hamming_loss"],
    }
