"""What a model version serves, rebuilt from its state: one head (``HeadCommittee`` or the
semi-supervised ``LabelSpreadingHead``), or a head with a committee beside it (QBC, BALD: the
committee only ranks the pool; the head predicts, suggests and is evaluated).

Pure numerics (NumPy + PyTorch, no Django). It sits above ``committee`` and ``semisupervised`` so
that neither imports the other's user.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from acquisition.committee import DEFAULT_CHUNK, HeadCommittee
from acquisition.multilabel import OneVsRestHead
from acquisition.semisupervised import LabelSpreadingHead

__all__ = ["HeadWithCommittee", "head_from_state_dict"]


class HeadWithCommittee:
    """One head serves; a committee beside it only ranks the pool for the committee strategies.

    A bootstrap committee's mean (QBC) or an MC-dropout MLP (BALD) predicts worse than one logistic
    head fitted on every label: each bootstrap member sees ~63% of the labels. So the head (a
    ``HeadCommittee`` with one member, or a ``LabelSpreadingHead``) gives ``classes_``,
    ``predict_proba`` / ``predict`` (suggestions, metrics, the gate) and the single-model scores
    (margin, entropy, least confidence), while the committee gives ``predict_proba_members`` and
    ``n_outputs_`` (its members or MC samples) and the ``qbc`` / ``bald`` scores.

    Both are fitted beforehand (on the same labels); ``state_dict`` / ``from_state_dict`` keep both.
    """

    COMMITTEE_SCORES = frozenset({"qbc", "bald"})

    def __init__(self, head, committee: HeadCommittee):
        self.head = head
        self.committee = committee

    @property
    def classes_(self) -> np.ndarray:
        return self.head.classes_

    @property
    def n_classes_(self) -> int:
        return self.head.n_classes_

    @property
    def n_features_in_(self) -> int:
        return self.head.n_features_in_

    @property
    def n_outputs_(self) -> int:
        return self.committee.n_outputs_

    def predict_proba(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        return self.head.predict_proba(X, chunk_size=chunk_size)

    def predict(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        return self.head.predict(X, chunk_size=chunk_size)

    def predict_proba_members(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """The committee's members (or MC samples): ``(S, n, C)``."""
        return self.committee.predict_proba_members(X, chunk_size=chunk_size)

    def score(self, X, strategy: str, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """``qbc`` / ``bald`` from the committee, every other score from the serving head."""
        model = self.committee if strategy in self.COMMITTEE_SCORES else self.head
        return model.score(X, strategy, chunk_size=chunk_size)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "head_with_committee", "head": self.head.state_dict(), "committee": self.committee.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], *, device: str | None = None) -> HeadWithCommittee:
        return cls(
            head_from_state_dict(state["head"], device=device),
            HeadCommittee.from_state_dict(state["committee"], device=device),
        )


def head_from_state_dict(state: dict[str, Any], *, device: str | None = None):
    """A ``HeadCommittee``, ``LabelSpreadingHead``, ``HeadWithCommittee`` or (multi-label)
    ``multilabel.OneVsRestHead`` from its ``state_dict``
    (by the state's ``kind``; a state without one is a ``HeadCommittee``'s)."""
    kind = state.get("kind")
    if kind == "head_with_committee":
        return HeadWithCommittee.from_state_dict(state, device=device)
    if kind == "label_spreading":
        return LabelSpreadingHead.from_state_dict(state, device=device)
    if kind == "one_vs_rest":
        return OneVsRestHead.from_state_dict(state, device=device)
    if kind is not None:
        raise ValueError(f"not a head's state: kind {kind!r}")
    return HeadCommittee.from_state_dict(state, device=device)
