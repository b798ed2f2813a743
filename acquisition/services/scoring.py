"""Scoring runs, the model side: rank a project's pool with the current model and pick the batch.

A run goes ``pending`` → ``running`` → ``succeeded`` | ``failed``; a partial unique constraint keeps
at most one active run per project. This module computes; ``loop.services.scoring`` drives a run
(inline or as a Celery chord of chunks) and writes the picks to the queue with
``annotation.services.queue.queue_replace`` in the same transaction that marks the run succeeded
(``scoring_run_succeed``), so annotators see either the old queue or the new one.

Plan of a run
-------------
1. Load the project's embeddings through the worker-local incremental cache
   (``acquisition.embeddings``) and the candidate ids (``selectors.scoring_candidate_ids``).
2. **Cold start** when there is no current model or fewer final labels than classes: a typical and
   diverse sample (``strategies.cold_start``, TypiClust by default: ``acquisition.coldstart``; the items
   already labelled or being labelled cover their clusters), reason ``cold_start``. A zero-shot prior from
   the label names (``acquisition.zeroshot``) steers it towards classes no final label has yet and gives
   the entries their suggestions until a model exists (see *Zero-shot prior* below).
3. Otherwise the candidates are cut into chunks of ``QUORUM_SCORING_CHUNK`` items by id range
   (``scoring_run_plan``). The loop scores one chunk inline, several in parallel (a Celery chord
   whose callback reduces them). Inline and chunked runs share the same two functions
   (``chunk_score`` and ``shortlists_reduce``), so on the same data they pick the same batch.
4. Each chunk returns a small *shortlist*: its top ``S`` items by score (ids and scores), plus its
   ``k`` smallest exploration keys. ``S = k`` for the per-item strategies (margin, entropy, least
   confidence, BALD, QBC, random): the global top ``k`` is then exactly the top ``k`` of the union.
5. Diversity strategies (MSAL, core-set) pick greedily: each pick lowers the distance term of the
   items near it. Chunks rank by the *initial* score ``s0(x) = U(x) + α·d_L(x)`` (core-set:
   ``d_L(x)``), where ``d_L`` is the cached min distance to the labelled set, and return their top
   ``S = max(4k, k + 256)``. The reducer keeps the global top ``S`` of the union by ``s0`` — the
   same set a single chunk would give — and runs the greedy batch step (``strategies.select_batch``
   with ``min_dist=d_L``) on those ``S`` items only. Greedy scores only decrease from ``s0``, so the
   result equals the greedy over the whole pool as long as every pick's score stays at or above
   ``τ``, the best ``s0`` left outside the shortlist; the reducer checks this bound and records
   ``greedy_exact`` in the run's timings (``False`` means a pick might differ from a full greedy,
   a rare case when ``k`` picks all crowd one region of a pool).
6. Exploration: ``round(ε·k)`` picks are uniform over the candidates not picked by the strategy,
   drawn with per-item keys ``u = hash(seed, item id)`` (the smallest keys win), which chunks can
   compute independently. They are interleaved through the batch (their priority sits between
   neighbouring strategy picks), so a refill never drops them all first.

Picks (``Pick``, the queue entries to be): ``priority`` is the entry's rank value in its batch,
``(n − j)/n`` for the j-th of n (0-based) in serving order (``sampling.rank_scale``), so every
strategy writes priorities on one [0, 1] scale that disputed items asking for an extra label are
compared against (``annotation.routing``); ``score`` is the strategy's raw score;
``suggested_label_id``/``suggested_confidence`` the model's prediction (the zero-shot prior's in a cold
start).

Zero-shot prior
---------------
The project's label classes, as ``"name in words: description"`` (``zeroshot.label_text``), are embedded
with the project's encoder; ``zeroshot.ZeroShotPrior`` turns cosine similarities into class
probabilities, its temperature set from the pool's score spread and refined on the final labels so far.
It is used only when the label vectors share the items' space, decided in ``zero_shot_prior``:

* the project's encoder must be one this deployment can build (``quorum.vocabulary.encoder_dimension``
  knows it) with the project's ``embedding_dim``, and build without error;
* every stored vector must come from it: ``ItemEmbedding.source`` is the encoder's name for vectors
  the worker made; for any other source (``provided``: vectors pushed with the records, from a model
  Quorum does not know) the texts of a seeded sample of up to ``ZERO_SHOT_CHECK_ITEMS`` such items are
  encoded and compared with their stored vectors, and the prior is used only if every cosine is at least
  ``ZERO_SHOT_MIN_COSINE`` (pushed vectors of the same model pass; those of another model, even of the
  same length, do not: unrelated embedding spaces give cosines near 0).

Otherwise the cold start is TypiClust alone and the entries carry no suggestion; the run's timings say
which (``zero_shot``: ``on`` or ``off: <reason>``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Item, LabelClass, Project, QueueReason, Strategy
from quorum.vocabulary import encoder_dimension

from .. import selectors
from ..embeddings import EmbeddingMatrix, embeddings_load, min_distances_to_labelled
from ..models import ItemEmbedding, ScoringRun
from ..sampling import exploration_priorities, n_exploration, rank_scale, ranked, shortlist_size, uniform_keys
from ..zeroshot import ZeroShotPrior, label_text
from .jobs import active_job_create, job_claimable, job_fail
from .registry import committee_device, model_load
from .snapshot import item_texts

logger = logging.getLogger(__name__)

DIVERSITY = {Strategy.MSAL, Strategy.CORESET}
COMMITTEE = {Strategy.QBC, Strategy.BALD}
MSAL_UNCERTAINTY = "margin"
#: Cold-start method (``strategies.COLD_START_METHODS``) unless ``settings.QUORUM_COLD_START_METHOD`` says.
COLD_START_METHOD = "typiclust"
#: Items whose stored vector of another source is compared with the encoder's own before the prior is used.
ZERO_SHOT_CHECK_ITEMS = 8
#: Least cosine between a stored vector and the encoder's vector of the same text (fp16 on CUDA vs fp32
#: on CPU stays above 0.999; vectors of an unrelated model are near 0).
ZERO_SHOT_MIN_COSINE = 0.99
#: Pool rows the prior's temperature is fitted on (a seeded sample of larger pools).
ZERO_SHOT_FIT_ROWS = 20_000


# ------------------------------------------------------------------------------------- creating
def scoring_run_create(*, project: Project, trigger: str) -> ScoringRun | None:
    """A new pending run, or ``None`` when the project already has an active one. A run left pending
    or running for longer than ``QUORUM_SCORING_STALE_SECONDS`` (its worker died) is marked failed
    first, so it never blocks later runs."""
    return active_job_create(
        ScoringRun,
        project=project,
        stale_seconds=settings.QUORUM_SCORING_STALE_SECONDS,
        strategy=project.acquisition_strategy,
        trigger=(trigger or "")[:32],
    )


# -------------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Chunk:
    index: int
    lo: int
    hi: int


@dataclass
class Pick:
    """One queue entry to be (the fields of ``annotation.services.queue.QueueCandidate``)."""

    item_id: int
    priority: float
    reason: str
    score: float | None = None
    suggested_label_id: int | None = None
    suggested_confidence: float | None = None
    suggested_tags: dict | None = None  # multi-label projects: {"tags": [label ids], "p": {id: p}}


@dataclass
class Batch:
    """What a run picked, in serving order, and the seconds each phase took."""

    picks: list[Pick]
    timings: dict = field(default_factory=dict)

    @property
    def explored(self) -> int:
        return sum(1 for pick in self.picks if pick.reason == QueueReason.EXPLORATION)


@dataclass
class Plan:
    """How a claimed run goes on: a cold-start ``batch`` (already picked), or ``chunks`` to score."""

    seed: int
    batch: Batch | None = None
    chunks: list[Chunk] = field(default_factory=list)


def scoring_run_claim(run_id: int) -> ScoringRun | None:
    """Mark a pending run running. Idempotent: a run that is not active (superseded, done) is left
    alone (``None``), and so is a running one whose worker is alive (a duplicate message); a
    ``running`` one whose message was redelivered after its worker died starts over."""
    with transaction.atomic():
        run = ScoringRun.objects.select_for_update(of=("self",)).select_related("project").filter(pk=run_id).first()
        if run is None or not job_claimable(run):
            return None
        run.status = ScoringRun.Status.RUNNING
        run.started_at = run.heartbeat_at = timezone.now()
        run.chunks_done = 0
        run.n_chunks = 1
        run.error = ""
        run.save(update_fields=["status", "started_at", "heartbeat_at", "chunks_done", "n_chunks", "error"])
    return run


def scoring_run_plan(run: ScoringRun, *, seed: int | None = None, chunk_size: int | None = None) -> Plan:
    """Load the candidates of a claimed run: a cold start is picked at once (module docstring, step
    2), otherwise the candidates are cut into chunks of ``chunk_size`` (``QUORUM_SCORING_CHUNK``)."""
    seed = run.pk if seed is None else int(seed)
    project = run.project
    started = time.perf_counter()
    matrix = embeddings_load(project)
    candidates = selectors.scoring_candidate_ids(project)
    candidates = candidates[matrix.present(candidates)]
    load_s = time.perf_counter() - started
    model_version = selectors.model_version_current(project)
    n_classes = LabelClass.objects.filter(project=project).count()
    cold = model_version is None or selectors.final_label_count(project) < n_classes
    ScoringRun.objects.filter(pk=run.pk).update(n_items=len(candidates), model_version=None if cold else model_version)
    run.model_version = None if cold else model_version
    timings = {"load": load_s, "embedding_rows_read": matrix.stats.rows_read}
    if cold or len(candidates) == 0:
        return Plan(seed, batch=_cold_start(run, project, matrix, candidates, seed, timings))
    size = chunk_size or settings.QUORUM_SCORING_CHUNK
    chunks = [
        Chunk(i, int(part[0]), int(part[-1]))
        for i, part in enumerate(np.array_split(candidates, max(1, -(-len(candidates) // size))))
    ]
    ScoringRun.objects.filter(pk=run.pk).update(n_chunks=len(chunks), timings=timings)
    return Plan(seed, chunks=chunks)


def scoring_run_fail(*, run_id: int, error: BaseException | str) -> None:
    """Mark an active run failed with the error (a later request can then start a new one)."""
    job_fail(ScoringRun, job_id=run_id, error=error)


def scoring_run_succeed(run: ScoringRun, *, selected: int, explored: int, timings: dict) -> None:
    """Record a locked running run as succeeded (inside the transaction that wrote its queue)."""
    run.status = ScoringRun.Status.SUCCEEDED
    run.selected = selected
    run.explored = explored
    run.chunks_done = run.n_chunks
    run.timings = {key: round(value, 6) if isinstance(value, float) else value for key, value in timings.items()}
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "selected", "explored", "chunks_done", "timings", "finished_at"])


# ---------------------------------------------------------------------------------------- chunks
def chunk_score(run_id: int, index: int, lo: int, hi: int, seed: int) -> dict:
    """Score the candidates with ``lo <= id <= hi``; return the chunk's shortlist (small: ids and
    scores). Counts the chunk done on the run, for progress bars."""

    run = ScoringRun.objects.select_related("project", "model_version").get(pk=run_id)
    if run.status != ScoringRun.Status.RUNNING:  # failed or superseded meanwhile: nothing to add
        return {
            "index": index,
            "n": 0,
            "ids": [],
            "scores": [],
            "u": None,
            "d": None,
            "bound": None,
            "explore_ids": [],
            "explore_keys": [],
            "timings": {},
        }
    project = run.project
    k = project.batch_size
    timings = {}
    started = time.perf_counter()
    matrix = embeddings_load(project)
    ids = selectors.scoring_candidate_ids(project, lo=lo, hi=hi)
    ids = ids[matrix.present(ids)]
    positions = matrix.positions(ids)
    timings["load"] = time.perf_counter() - started

    strategy = run.strategy
    explore_keys = uniform_keys(ids, seed, salt=1)
    started = time.perf_counter()
    u = d_l = None
    if strategy == Strategy.RANDOM:
        scores = uniform_keys(ids, seed, salt=2)
        timings["predict"] = 0.0
    else:
        if strategy in DIVERSITY:
            labelled = selectors.labelled_item_ids(project)
            min_dist, _ = min_distances_to_labelled(project, matrix, labelled, device=committee_device())
            d_l = min_dist[positions]
        if strategy == Strategy.CORESET:
            scores = np.where(np.isfinite(d_l), d_l, 0.0).astype(np.float64)
            timings["predict"] = 0.0
        else:
            model = model_load(run.model_version)
            uncertainty = MSAL_UNCERTAINTY if strategy == Strategy.MSAL else strategy
            if uncertainty in COMMITTEE and getattr(model, "n_outputs_", 2) < 2:
                # a single model (trained for another strategy): no disagreement to measure
                uncertainty = "margin"
                timings["uncertainty"] = "margin (the model has one member; retrain for this strategy)"
            t = time.perf_counter()
            # forward pass + score, chunk by chunk (the (M, n, C) probabilities never exist at once)
            scores = _model_scores(model, matrix, positions, uncertainty, ids)
            timings["predict"] = time.perf_counter() - t
            if strategy == Strategy.MSAL:
                u = scores
                scores = u + settings.QUORUM_MSAL_ALPHA * np.where(np.isfinite(d_l), d_l, 0.0)
    timings["score"] = time.perf_counter() - started - timings["predict"]

    size = shortlist_size(k, greedy=strategy in DIVERSITY)
    order = ranked(ids, scores)
    top = order[:size]
    bound = float(scores[order[size]]) if len(ids) > size else None
    low = np.lexsort((ids, explore_keys))[: k + n_exploration(project.exploration_fraction, k)]
    ScoringRun.objects.filter(pk=run_id).update(chunks_done=F("chunks_done") + 1, heartbeat_at=timezone.now())
    return {
        "index": index,
        "n": int(len(ids)),
        "ids": ids[top].tolist(),
        "scores": scores[top].tolist(),
        # diversity strategies: the uncertainty term and the min distance of each shortlisted item
        "u": None if u is None else u[top].tolist(),
        "d": None if d_l is None or not np.isfinite(d_l).all() else d_l[top].astype(np.float64).tolist(),
        "bound": bound,
        "explore_ids": ids[low].tolist(),
        "explore_keys": explore_keys[low].tolist(),
        "timings": timings,
    }


def _model_scores(model, matrix: EmbeddingMatrix, positions: np.ndarray, name: str, ids: np.ndarray) -> np.ndarray:
    """The model's ``name`` score of the items ``ids`` (at ``positions`` of the matrix). A fine-tuned
    encoder reads their texts. For heads, when the rows are most of the matrix, the memory-mapped
    matrix is streamed whole and the other rows' scores dropped, instead of gathering a copy of the
    candidates' vectors (1.5 GB for 1M × 384)."""
    if getattr(model, "input_kind", "vectors") == "texts":
        return np.asarray(model.score(item_texts(ids), name), dtype=np.float64)
    if len(positions) * 2 >= len(matrix):
        return np.asarray(model.score(matrix.vectors, name), dtype=np.float64)[positions]
    return np.asarray(model.score(np.asarray(matrix.vectors[positions]), name), dtype=np.float64)


# ---------------------------------------------------------------------------------------- reduce
def shortlists_reduce(results: list[dict], run: ScoringRun, seed: int) -> Batch:
    """Reduce the chunks' shortlists to the batch and add the exploration picks (module docstring)."""
    project = run.project
    k = project.batch_size
    n_explore = n_exploration(project.exploration_fraction, k)
    timings = dict(run.timings or {})
    for phase in ("predict", "score"):
        timings[phase] = sum(r["timings"].get(phase, 0.0) for r in results)
    for r in results:
        if "uncertainty" in r["timings"]:
            timings["uncertainty"] = r["timings"]["uncertainty"]
    timings["load"] = timings.get("load", 0.0) + max((r["timings"].get("load", 0.0) for r in results), default=0)
    started = time.perf_counter()
    ids = np.array([i for r in results for i in r["ids"]], dtype=np.int64)
    scores = np.array([s for r in results for s in r["scores"]], dtype=np.float64)
    n_total = sum(r["n"] for r in results)
    n_pick = min(k - n_explore, n_total)
    strategy = run.strategy
    if strategy in DIVERSITY:
        # Global top S of the union by the initial score s0, then the exact greedy on those S.
        size = shortlist_size(k, greedy=True)
        u_all = np.array([x for r in results for x in (r["u"] or [0.0] * len(r["ids"]))], dtype=np.float64)
        no_labels = any(r["d"] is None for r in results)
        d_all = None if no_labels else np.array([x for r in results for x in r["d"]], dtype=np.float64)
        order = ranked(ids, scores)
        bounds = [r["bound"] for r in results if r["bound"] is not None]
        if len(order) > size:
            bounds.append(float(scores[order[size]]))
        tau = max(bounds) if bounds else -np.inf
        short = order[:size]
        short_ids = ids[short]
        matrix = embeddings_load(project)
        vectors = np.asarray(matrix.vectors[matrix.positions(short_ids)])
        from .. import strategies  # PyTorch loads where a model runs, not in web processes

        selection = strategies.select_batch(
            strategy,
            n_pick,
            scores=u_all[short] if strategy == Strategy.MSAL else None,
            embeddings=vectors,
            min_dist=None if d_all is None else d_all[short].astype(np.float32),
            uncertainty=MSAL_UNCERTAINTY,
            alpha=settings.QUORUM_MSAL_ALPHA,
            epsilon=0.0,
            seed=seed,
            device=committee_device(),
        )
        pick = np.asarray(selection.indices, dtype=np.int64)
        pick_scores = np.asarray(selection.scores, dtype=np.float64)
        picked_ids = short_ids[pick]
        timings["greedy_exact"] = bool(len(pick_scores) == 0 or pick_scores.min() >= tau)
    else:
        order = ranked(ids, scores)[:n_pick]
        picked_ids, pick_scores = ids[order], scores[order]
    explore_ids = np.array([i for r in results for i in r["explore_ids"]], dtype=np.int64)
    explore_keys = np.array([u for r in results for u in r["explore_keys"]], dtype=np.float64)
    keep = ~np.isin(explore_ids, picked_ids)
    explore_ids, explore_keys = explore_ids[keep], explore_keys[keep]
    explore = explore_ids[np.lexsort((explore_ids, explore_keys))][: min(n_explore, n_total - len(picked_ids))]
    timings["select"] = time.perf_counter() - started
    picks = _picks(run, project, picked_ids, pick_scores, explore, reason=QueueReason.ACQUISITION)
    return Batch(picks, timings)


def _cold_start(run, project, matrix: EmbeddingMatrix, candidates: np.ndarray, seed: int, timings: dict) -> Batch:
    k = project.batch_size
    n_explore = n_exploration(project.exploration_fraction, k)
    n_pick = min(k - n_explore, len(candidates))
    started = time.perf_counter()
    picked = np.empty(0, dtype=np.int64)
    method = getattr(settings, "QUORUM_COLD_START_METHOD", COLD_START_METHOD)
    prior = None
    if len(candidates):
        prior = zero_shot_prior(project, matrix, seed=seed, timings=timings)
    if n_pick:
        from .. import strategies  # PyTorch loads where a model runs, not in web processes

        vectors = np.asarray(matrix.vectors[matrix.positions(candidates)])
        # items labelled or being labelled (final, annotated, in review, started) cover their clusters
        others = matrix.ids[~np.isin(matrix.ids, candidates)]
        classes = _final_classes(project, others)
        index = strategies.cold_start(
            vectors,
            n_pick,
            seed=seed,
            method=method,
            labelled=np.asarray(matrix.vectors[matrix.positions(others)]) if len(others) else None,
            labelled_classes=classes,
            prior=prior,
        )
        picked = candidates[np.asarray(index, dtype=np.int64)]
    rest = candidates[~np.isin(candidates, picked)]
    keys = uniform_keys(rest, seed, salt=1)
    explore = rest[np.lexsort((rest, keys))][: min(n_explore, len(rest))]
    timings.update({"cold_start": method, "predict": 0.0, "score": 0.0, "select": time.perf_counter() - started})
    ScoringRun.objects.filter(pk=run.pk).update(chunks_done=1, n_chunks=1)
    run.n_chunks = 1
    ranks = -np.arange(len(picked), dtype=np.float64)  # pick order: the largest uncovered cluster first
    picks = _picks(run, project, picked, None, explore, reason=QueueReason.COLD_START, ranks=ranks, prior=prior)
    return Batch(picks, timings)


def _label_classes(project) -> list[tuple[int, str, str]]:
    """The project's classes as ``(pk, name, description)``, in the order models number them."""
    return list(
        LabelClass.objects.filter(project=project).order_by("order", "pk").values_list("pk", "name", "description")
    )


def _final_classes(project, item_ids: np.ndarray) -> np.ndarray:
    """The class index of each item's final label (``_label_classes`` order), -1 where it has none."""
    column = {pk: i for i, (pk, _, _) in enumerate(_label_classes(project))}
    final = Item.objects.filter(project=project, final_label__isnull=False).values_list("pk", "final_label_id")
    pairs = np.array([(pk, column.get(label, -1)) for pk, label in final], dtype=np.int64).reshape(-1, 2)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    out = np.full(len(item_ids), -1, dtype=np.int64)
    if len(pairs):
        order = np.argsort(pairs[:, 0])
        known, classes = pairs[order, 0], pairs[order, 1]
        at = np.minimum(np.searchsorted(known, item_ids), len(known) - 1)
        hit = known[at] == item_ids
        out[hit] = classes[at[hit]]
    return out


def zero_shot_prior(project, matrix: EmbeddingMatrix, *, seed: int = 0, timings: dict | None = None):
    """The project's zero-shot prior (``zeroshot.ZeroShotPrior``, fitted), or ``None`` when the label names
    cannot be put in the items' embedding space (module docstring, *Zero-shot prior*). ``timings`` gets
    ``zero_shot``: ``on`` or ``off: <reason>``."""
    timings = {} if timings is None else timings
    prior, reason = _zero_shot(project, matrix, seed)
    timings["zero_shot"] = "on" if prior is not None else f"off: {reason}"
    if prior is not None:
        timings["zero_shot_temperature"] = float(prior.temperature_)
    return prior


def _zero_shot(project, matrix: EmbeddingMatrix, seed: int):
    if not getattr(settings, "QUORUM_ZERO_SHOT", True):
        return None, "QUORUM_ZERO_SHOT is off"
    if project.multi_label:
        return None, "single-label projects only (a softmax over label names cannot say how many tags apply)"
    classes = _label_classes(project)
    if len(classes) < 2:
        return None, "fewer than two label classes"
    if len(matrix) == 0:
        return None, "no embedded item"
    dim = encoder_dimension(project.encoder, settings.QUORUM_EXTRA_ENCODERS)
    if dim is None:
        return None, f"the project's encoder {project.encoder!r} is not one this deployment can run"
    if dim != project.embedding_dim or dim != matrix.dim:
        return None, (
            f"the vectors are not those of a known text encoder ({project.encoder!r} makes {dim}-d vectors, "
            f"the items have {matrix.dim}-d)"
        )
    try:
        from ..encoders import get_encoder  # PyTorch loads where a model runs, not in web processes

        encoder = get_encoder(project.encoder, device=settings.QUORUM_DEVICE)
    except (ValueError, RuntimeError, OSError, ImportError) as exc:
        return None, f"the encoder {project.encoder!r} cannot be loaded ({exc})"
    if encoder.dim != matrix.dim:
        return None, f"the encoder makes {encoder.dim}-d vectors, the items have {matrix.dim}-d"
    foreign = ItemEmbedding.objects.filter(project=project).exclude(source=encoder.name)
    if foreign.exists():
        ids = np.sort(np.fromiter(foreign.values_list("item_id", flat=True), dtype=np.int64))
        ids = ids[matrix.present(ids)]
        if len(ids):
            rng = np.random.default_rng([seed, 1])
            check = np.sort(rng.choice(ids, size=min(ZERO_SHOT_CHECK_ITEMS, len(ids)), replace=False))
            mine = encoder.encode(item_texts(check))
            stored = np.asarray(matrix.vectors[matrix.positions(check)], dtype=np.float64)
            cosine = np.sum(mine * stored, axis=1) / np.maximum(
                np.linalg.norm(mine, axis=1) * np.linalg.norm(stored, axis=1), 1e-12
            )
            if cosine.min() < ZERO_SHOT_MIN_COSINE:
                return None, (
                    f"the pushed vectors are not {encoder.name!r}'s (lowest cosine {cosine.min():.2f} "
                    f"on {len(check)} re-encoded items)"
                )
    label_vectors = encoder.encode([label_text(name, description) for _, name, description in classes])
    rng = np.random.default_rng([seed, 2])
    n = len(matrix)
    rows = np.sort(rng.choice(n, size=ZERO_SHOT_FIT_ROWS, replace=False)) if n > ZERO_SHOT_FIT_ROWS else np.arange(n)
    # every item of known class fits the temperature; the sample gives the unsupervised scale
    y = _final_classes(project, matrix.ids)
    rows = np.union1d(rows, np.flatnonzero(y >= 0))
    prior = ZeroShotPrior(label_vectors).fit(np.asarray(matrix.vectors[rows]), y[rows])
    prior.label_ids_ = [pk for pk, _, _ in classes]
    return prior, ""


def _picks(run, project, picked_ids, pick_scores, explore_ids, *, reason, ranks=None, prior=None) -> list[Pick]:
    """The strategy's picks and the exploration picks, interleaved, in serving order on the rank scale."""
    picked_ids = np.asarray(picked_ids, dtype=np.int64)
    explore_ids = np.asarray(explore_ids, dtype=np.int64)
    priorities = np.asarray(ranks if ranks is not None else pick_scores, dtype=np.float64)
    suggestions = _suggestions(run, project, np.concatenate([picked_ids, explore_ids]), prior=prior)
    picks = [
        Pick(
            item_id=int(item_id),
            priority=float(priorities[i]),
            score=None if pick_scores is None else float(pick_scores[i]),
            reason=reason,
            **suggestions.get(int(item_id), {}),
        )
        for i, item_id in enumerate(picked_ids)
    ]
    for item_id, priority in zip(explore_ids, exploration_priorities(priorities, len(explore_ids)), strict=True):
        picks.append(
            Pick(
                item_id=int(item_id),
                priority=float(priority),
                reason=QueueReason.EXPLORATION,
                **suggestions.get(int(item_id), {}),
            )
        )
    order, scaled = rank_scale(np.array([pick.priority for pick in picks]))
    out = [picks[i] for i in order]
    for pick, priority in zip(out, scaled, strict=True):
        pick.priority = float(priority)
    return out


def _suggestions(run, project, item_ids: np.ndarray, *, prior=None) -> dict[int, dict]:
    """The model's predicted label and confidence per item; without a model the zero-shot prior's (empty
    without either)."""
    version = run.model_version
    if not len(item_ids):
        return {}
    if version is None:
        return {} if prior is None else _prior_suggestions(prior, project, item_ids)
    model = model_load(version)
    matrix = embeddings_load(project)
    present = matrix.present(item_ids)
    ids = item_ids[present]
    if project.multi_label:
        return _tag_suggestions(project, version, model, np.asarray(matrix.vectors[matrix.positions(ids)]), ids)
    if getattr(model, "input_kind", "vectors") == "texts":
        probs = np.asarray(model.predict_proba(item_texts(ids)))
    else:
        probs = np.asarray(model.predict_proba(np.asarray(matrix.vectors[matrix.positions(ids)])))
    label_ids = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    columns = [label_ids.get(name) for name in version.label_names]
    best = probs.argmax(axis=1)
    return {
        int(item_id): {"suggested_label_id": columns[best[i]], "suggested_confidence": float(probs[i, best[i]])}
        for i, item_id in enumerate(ids)
        if columns[best[i]] is not None
    }


#: Tags a multi-label suggestion lists with their probability (the rest are near 0).
SUGGESTED_TAG_MIN_P = 0.01


def _tag_suggestions(project, version, model, X: np.ndarray, ids: np.ndarray) -> dict[int, dict]:
    """Multi-label: the model's tag set (its per-tag thresholds) with every tag's probability of at
    least ``SUGGESTED_TAG_MIN_P``; the confidence is the least sure tag's max(p, 1 − p)."""
    if not len(ids):
        return {}
    probs = np.asarray(model.predict_proba(X), dtype=np.float64)
    tags = np.asarray(model.predict(X), dtype=bool)
    label_ids = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    columns = [label_ids.get(name) for name in version.label_names]
    confidence = np.maximum(probs, 1.0 - probs).min(axis=1) if probs.shape[1] else np.ones(len(ids))
    out = {}
    for i, item_id in enumerate(ids):
        out[int(item_id)] = {
            "suggested_confidence": float(confidence[i]),
            "suggested_tags": {
                "tags": sorted(columns[j] for j in np.flatnonzero(tags[i]) if columns[j] is not None),
                "p": {
                    str(columns[j]): round(float(probs[i, j]), 4)
                    for j in np.flatnonzero(probs[i] >= SUGGESTED_TAG_MIN_P)
                    if columns[j] is not None
                },
            },
        }
    return out


def _prior_suggestions(prior, project, item_ids: np.ndarray) -> dict[int, dict]:
    """The zero-shot prior's most probable class and its probability per item."""
    matrix = embeddings_load(project)
    ids = item_ids[matrix.present(item_ids)]
    if not len(ids):
        return {}
    probs = prior.predict_proba(np.asarray(matrix.vectors[matrix.positions(ids)]))
    best = probs.argmax(axis=1)
    return {
        int(item_id): {
            "suggested_label_id": prior.label_ids_[best[i]],
            "suggested_confidence": float(probs[i, best[i]]),
        }
        for i, item_id in enumerate(ids)
    }
