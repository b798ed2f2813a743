"""Suspected label errors among a project's final labels (confident learning on out-of-fold heads).

``label_errors_find`` reads the project's label snapshot (``snapshot.label_snapshot``: every final
label with an embedding, with its weight), fits ``k``-fold heads on the frozen embeddings and runs
confident learning on their out-of-fold probabilities (``acquisition.label_errors``; Northcutt,
Jiang & Chuang, JAIR 2021, as cleanlab's ``find_label_issues``). The rules:

- The heads are those the serving model uses for single-model strategies
  (``fitting.committee_hyperparameters``: one logistic head, L2 ``1/C = 0.1``), one per fold, with
  the snapshot's label weights, on CUDA when the worker has one; whatever the project's strategy
  (a QBC committee or BALD's MC-dropout MLP per fold would multiply the cost by its members or
  epochs inside the retrain's time). ``k = 5``, fewer only when every class has fewer labels; the
  fold split is seeded (``seed``: the model version's).
- Every final label takes part (gold and reviewed labels are data too: they train the heads and
  shape the per-class thresholds), but only labels whose final source is ``consensus`` are
  returned as flags: a gold or reviewed label was decided by a person and is never questioned.
- Flags are ranked by self-confidence, the out-of-fold probability of the given label, lowest
  first; each carries the item, its given label, the model's alternative (its most probable other
  class) and that class's out-of-fold probability.

It writes nothing: the people side opens the review tasks (``annotation.services.review``), the loop
decides when (``loop.services.training``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from annotation.models import Item, LabelSource, Project, Strategy
from quorum.chunks import iter_chunks

from ..label_errors import DEFAULT_FOLDS, LabelErrorFinder, fold_count
from .fitting import committee_hyperparameters
from .registry import committee_device
from .snapshot import LabelSnapshot, label_snapshot


@dataclass(frozen=True, slots=True)
class LabelErrorFlag:
    item_id: int
    given_label_id: int
    given_label: str
    given_probability: float  # out of fold
    model_label_id: int
    model_label: str
    model_probability: float  # out of fold


@dataclass
class LabelErrorScan:
    flags: list[LabelErrorFlag] = field(default_factory=list)  # consensus labels only, ranked
    n_labels: int = 0
    n_folds: int = 0
    n_issues: int = 0  # confident learning's issues over every label, before keeping consensus ones
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "labels": self.n_labels,
            "folds": self.n_folds,
            "issues": self.n_issues,
            "flagged": len(self.flags),
            "seconds": round(self.seconds, 4),
        }


def single_model_hyperparameters() -> dict:
    """The serving head of the single-model strategies (margin, entropy, least confidence, MSAL,
    random share one): ``committee_hyperparameters`` of any of them."""
    return committee_hyperparameters(Strategy.MARGIN)


def label_errors_find(
    *, project: Project, seed: int = 0, snapshot: LabelSnapshot | None = None, n_splits: int = DEFAULT_FOLDS
) -> LabelErrorScan:
    """The project's suspected label errors (module docstring); an empty scan when no class has two labels."""
    from ..committee import HeadCommittee  # PyTorch loads where a model runs, not in web processes

    started = time.perf_counter()
    snap = snapshot if snapshot is not None else label_snapshot(project)
    scan = LabelErrorScan(n_labels=len(snap))
    if fold_count(snap.y, n_splits) < 2:
        scan.seconds = time.perf_counter() - started
        return scan
    heads = HeadCommittee(**single_model_hyperparameters(), random_state=int(seed), device=committee_device())
    finder = LabelErrorFinder(heads, n_splits=n_splits, random_state=int(seed)).fit(
        snap.X, snap.y, n_classes=len(snap.label_names), sample_weight=snap.weights
    )
    scan.n_folds = finder.n_splits_
    scan.n_issues = int(finder.issues_.sum())
    ranked = finder.ranking_
    consensus: set[int] = set()
    for chunk in iter_chunks([int(i) for i in snap.item_ids[ranked]], 2000):
        consensus.update(
            Item.objects.filter(pk__in=chunk, final_source=LabelSource.CONSENSUS).values_list("pk", flat=True)
        )
    names, ids = snap.label_names, snap.label_ids
    for row in ranked.tolist():
        item_id = int(snap.item_ids[row])
        if item_id not in consensus:
            continue
        given, other = int(snap.y[row]), int(finder.alternative_[row])
        scan.flags.append(
            LabelErrorFlag(
                item_id=item_id,
                given_label_id=int(ids[given]),
                given_label=names[given],
                given_probability=float(finder.self_confidence_[row]),
                model_label_id=int(ids[other]),
                model_label=names[other],
                model_probability=float(finder.alternative_proba_[row]),
            )
        )
    scan.seconds = time.perf_counter() - started
    return scan
