"""Scoring runs: rank a project's pool with the current model and (re)fill its annotation queue.

A run goes ``pending`` → ``running`` → ``succeeded`` | ``failed``; a partial unique constraint keeps
at most one active run per project, and the queue is written by ``queue_replace`` in the same
transaction that marks the run succeeded, so annotators see either the old queue or the new one.

Plan of a run
-------------
1. Load the project's embeddings through the worker-local incremental cache
   (``acquisition.embeddings``) and the candidate ids (``selectors.scoring_candidate_ids``).
2. **Cold start** when there is no current model or fewer final labels than classes: a diverse
   sample (``strategies.cold_start``, k-center on the embeddings), reason ``cold_start``.
3. Otherwise the candidates are cut into chunks of ``QUORUM_SCORING_CHUNK`` items by id range.
   One chunk is scored inline; several are scored in parallel by a Celery ``chord`` whose callback
   reduces them. Inline and chunked runs share the same two functions (``chunk_score`` and
   ``run_reduce``), so on the same data they write the same queue.
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

Queue entries: ``priority`` is the entry's rank value in its batch, ``(n − j)/n`` for the j-th of n
(0-based) in serving order, so every strategy writes priorities on one [0, 1] scale that disputed
items asking for an extra label are compared against (``annotation.routing``); ``score`` is the
strategy's raw score; ``suggested_label``/``suggested_confidence`` the committee's mean prediction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import LabelClass, Project, QueueEntry, QueueReason, Strategy
from annotation.services.queue import QueueCandidate, queue_replace

from .. import selectors
from ..embeddings import EmbeddingMatrix, embeddings_load, min_distances_to_labelled
from ..models import ItemEmbedding, ScoringRun
from .jobs import active_job_create, job_fail, stale_jobs_expire
from .training import committee_device, model_load

logger = logging.getLogger(__name__)

DIVERSITY = {Strategy.MSAL, Strategy.CORESET}
COMMITTEE = {Strategy.QBC, Strategy.BALD}
MSAL_UNCERTAINTY = "margin"


# ----------------------------------------------------------------------------------- requesting
def scoring_request(*, project: Project, trigger: str) -> ScoringRun | None:
    """Ask for a scoring run of ``project``; ``None`` when one is already pending or running.

    The run is enqueued once the surrounding transaction commits. A run left pending or running
    for longer than ``QUORUM_SCORING_STALE_SECONDS`` (its worker died) is marked failed first, so it
    never blocks later runs.
    """
    with transaction.atomic():
        run = scoring_run_create(project=project, trigger=trigger)
        if run is not None:
            transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def scoring_run_create(*, project: Project, trigger: str) -> ScoringRun | None:
    """A new pending run (not enqueued), or ``None`` when the project already has an active one."""
    return active_job_create(
        ScoringRun,
        project=project,
        stale_seconds=settings.QUORUM_SCORING_STALE_SECONDS,
        strategy=project.acquisition_strategy,
        trigger=(trigger or "")[:32],
    )


def scoring_runs_expire(*, project: Project) -> int:
    """Mark the project's stale active runs failed (their worker was lost). Returns how many."""
    return stale_jobs_expire(ScoringRun, project=project, stale_seconds=settings.QUORUM_SCORING_STALE_SECONDS)


def scoring_queue(project: Project) -> str | None:
    """The ``gpu`` queue when the current model is a fine-tuned encoder (it reads texts), else the default."""
    current = selectors.model_version_current(project)
    return settings.CELERY_GPU_QUEUE if current is not None and current.kind == "finetune" else None


def _enqueue(run_id: int) -> None:
    from ..tasks import scoring_run_execute

    try:
        run = ScoringRun.objects.select_related("project").get(pk=run_id)
        queue = scoring_queue(run.project)
        if queue:
            scoring_run_execute.apply_async((run_id,), queue=queue)
        else:
            scoring_run_execute.delay(run_id)
    except Exception:  # the broker is down: the run stays pending and expires
        logger.exception("could not enqueue scoring run %s", run_id)


# ------------------------------------------------------------------------------------- executing
@dataclass(frozen=True)
class Chunk:
    index: int
    lo: int
    hi: int


def scoring_run_execute(run_id: int, *, seed: int | None = None, chunk_size: int | None = None) -> dict:
    """Run (or fan out) a pending scoring run. Idempotent: a run that is not pending is left alone,
    except a ``running`` one whose message was redelivered after its worker died, which starts over."""
    run = _claim(run_id)
    if run is None:
        return {"run": run_id, "status": "skipped"}
    seed = run.pk if seed is None else int(seed)
    try:
        project = run.project
        started = time.perf_counter()
        matrix = embeddings_load(project)
        candidates = selectors.scoring_candidate_ids(project)
        candidates = candidates[matrix.present(candidates)]
        load_s = time.perf_counter() - started
        model_version = selectors.model_version_current(project)
        n_classes = LabelClass.objects.filter(project=project).count()
        cold = model_version is None or selectors.final_label_count(project) < n_classes
        ScoringRun.objects.filter(pk=run.pk).update(
            n_items=len(candidates), model_version=None if cold else model_version
        )
        timings = {"load": load_s, "embedding_rows_read": matrix.stats.rows_read}
        if cold or len(candidates) == 0:
            return _cold_start(run, project, matrix, candidates, seed, timings)

        size = chunk_size or settings.QUORUM_SCORING_CHUNK
        chunks = [
            Chunk(i, int(part[0]), int(part[-1]))
            for i, part in enumerate(np.array_split(candidates, max(1, -(-len(candidates) // size))))
        ]
        ScoringRun.objects.filter(pk=run.pk).update(n_chunks=len(chunks), timings=timings)
        if len(chunks) == 1:
            result = chunk_score(run.pk, chunks[0].index, chunks[0].lo, chunks[0].hi, seed)
            return run_reduce([result], run.pk, seed)
        from celery import chord

        from ..tasks import scoring_chunk_score, scoring_run_reduce

        queue = scoring_queue(project)
        header = [scoring_chunk_score.s(run.pk, c.index, c.lo, c.hi, seed) for c in chunks]
        if queue:
            header = [signature.set(queue=queue) for signature in header]
        chord(header)(scoring_run_reduce.s(run.pk, seed))
        return {"run": run.pk, "status": "running", "chunks": len(chunks)}
    except Exception as exc:
        scoring_run_fail(run_id=run.pk, error=exc)
        raise


def _claim(run_id: int) -> ScoringRun | None:
    with transaction.atomic():
        run = ScoringRun.objects.select_for_update(of=("self",)).select_related("project").filter(pk=run_id).first()
        if run is None or run.status not in ScoringRun.ACTIVE:
            return None
        run.status = ScoringRun.Status.RUNNING
        run.started_at = timezone.now()
        run.chunks_done = 0
        run.n_chunks = 1
        run.error = ""
        run.save(update_fields=["status", "started_at", "chunks_done", "n_chunks", "error"])
    return run


def scoring_run_fail(*, run_id: int, error: BaseException | str) -> None:
    """Mark an active run failed with the error (a later request can then start a new one)."""
    job_fail(ScoringRun, job_id=run_id, error=error)
    run = ScoringRun.objects.filter(pk=run_id).select_related("project").first()
    if run is not None:
        from .loop import training_jobs_settle

        training_jobs_settle(project=run.project)


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

    size = shortlist_size(strategy, k)
    order = ranked(ids, scores)
    top = order[:size]
    bound = float(scores[order[size]]) if len(ids) > size else None
    low = np.lexsort((ids, explore_keys))[: k + n_exploration(project, k)]
    ScoringRun.objects.filter(pk=run_id).update(chunks_done=F("chunks_done") + 1)
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
        from .training import item_texts

        return np.asarray(_numpy(model.score(item_texts(ids), name)), dtype=np.float64)
    if len(positions) * 2 >= len(matrix):
        return np.asarray(_numpy(model.score(matrix.vectors, name)), dtype=np.float64)[positions]
    return np.asarray(_numpy(model.score(np.asarray(matrix.vectors[positions]), name)), dtype=np.float64)


def _numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


def shortlist_size(strategy: str, k: int) -> int:
    return max(4 * k, k + 256) if strategy in DIVERSITY else k


def n_exploration(project: Project, k: int) -> int:
    return min(k, int(round(project.exploration_fraction * k)))


def ranked(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Order of descending score, ties broken by the smaller item id (deterministic)."""
    return np.lexsort((ids, -np.asarray(scores, dtype=np.float64)))


def uniform_keys(ids: np.ndarray, seed: int, *, salt: int = 0) -> np.ndarray:
    """A uniform [0, 1) key per item id: splitmix64 of (seed, salt, id). The items with the ``m``
    smallest keys are a uniform random sample of size ``m``, computable chunk by chunk."""
    with np.errstate(over="ignore"):
        x = np.asarray(ids, dtype=np.uint64) + np.uint64((seed * 0x9E3779B1 + salt * 0x85EBCA77) & (2**64 - 1))
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


# ---------------------------------------------------------------------------------------- reduce
def run_reduce(results: list[dict], run_id: int, seed: int) -> dict:
    """Reduce chunk shortlists to the batch, add exploration picks and write the queue."""
    from .. import strategies

    run = ScoringRun.objects.select_related("project", "model_version").get(pk=run_id)
    if run.status != ScoringRun.Status.RUNNING:
        return {"run": run_id, "status": run.status}
    project = run.project
    try:
        k = project.batch_size
        n_explore = n_exploration(project, k)
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
            size = shortlist_size(strategy, k)
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

        candidates = _queue_candidates(run, project, picked_ids, pick_scores, explore, reason=QueueReason.ACQUISITION)
        return _finish(run, project, candidates, timings)
    except Exception as exc:
        scoring_run_fail(run_id=run_id, error=exc)
        raise


def _cold_start(run, project, matrix: EmbeddingMatrix, candidates: np.ndarray, seed: int, timings: dict) -> dict:
    from .. import strategies

    k = project.batch_size
    n_explore = n_exploration(project, k)
    n_pick = min(k - n_explore, len(candidates))
    started = time.perf_counter()
    picked = np.empty(0, dtype=np.int64)
    if n_pick:
        vectors = np.asarray(matrix.vectors[matrix.positions(candidates)])
        index = np.asarray(_numpy(strategies.cold_start(vectors, n_pick, seed=seed)), dtype=np.int64)
        picked = candidates[index]
    rest = candidates[~np.isin(candidates, picked)]
    keys = uniform_keys(rest, seed, salt=1)
    explore = rest[np.lexsort((rest, keys))][: min(n_explore, len(rest))]
    timings.update({"predict": 0.0, "score": 0.0, "select": time.perf_counter() - started})
    ScoringRun.objects.filter(pk=run.pk).update(chunks_done=1, n_chunks=1)
    ranks = -np.arange(len(picked), dtype=np.float64)  # k-center order: the most distant first
    candidates_out = _queue_candidates(run, project, picked, None, explore, reason=QueueReason.COLD_START, ranks=ranks)
    return _finish(run, project, candidates_out, timings)


def _queue_candidates(
    run, project, picked_ids, pick_scores, explore_ids, *, reason, ranks=None
) -> list[QueueCandidate]:
    """Queue entries for the strategy's picks and the exploration picks, interleaved by priority."""
    picked_ids = np.asarray(picked_ids, dtype=np.int64)
    priorities = np.asarray(ranks if ranks is not None else pick_scores, dtype=np.float64)
    suggestions = _suggestions(run, project, np.concatenate([picked_ids, explore_ids]))
    out = [
        QueueCandidate(
            item_id=int(item_id),
            priority=float(priorities[i]),
            score=None if pick_scores is None else float(pick_scores[i]),
            reason=reason,
            **suggestions.get(int(item_id), {}),
        )
        for i, item_id in enumerate(picked_ids)
    ]
    # Exploration picks are spread through the batch: pick j of m sits just below the strategy
    # pick at position ceil((j + 1) * n / (m + 1)), so any prefix of the queue holds its share.
    order = np.sort(priorities)[::-1]
    m = len(explore_ids)
    for j, item_id in enumerate(explore_ids):
        if len(order):
            slot = min(len(order) - 1, int(np.ceil((j + 1) * len(order) / (m + 1))) - 1)
            priority = float(np.nextafter(order[slot], -np.inf))
        else:
            priority = -float(j)
        out.append(
            QueueCandidate(
                item_id=int(item_id),
                priority=priority,
                reason=QueueReason.EXPLORATION,
                **suggestions.get(int(item_id), {}),
            )
        )
    return _on_rank_scale(out)


def _on_rank_scale(candidates: list[QueueCandidate]) -> list[QueueCandidate]:
    """The same entries in serving order, with priority (n − j)/n: one scale for every strategy."""
    ordered = sorted(candidates, key=lambda c: -c.priority)  # stable: ties keep pick order
    n = len(ordered)
    return [replace(c, priority=(n - j) / n) for j, c in enumerate(ordered)]


def _suggestions(run, project, item_ids: np.ndarray) -> dict[int, dict]:
    """The committee's predicted label and confidence per item (empty without a model)."""
    version = run.model_version
    if version is None or not len(item_ids):
        return {}
    model = model_load(version)
    matrix = embeddings_load(project)
    present = matrix.present(item_ids)
    ids = item_ids[present]
    if getattr(model, "input_kind", "vectors") == "texts":
        from .training import item_texts

        probs = np.asarray(model.predict_proba(item_texts(ids)))
    else:
        probs = np.asarray(_numpy(model.predict_proba(np.asarray(matrix.vectors[matrix.positions(ids)]))))
    label_ids = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    columns = [label_ids.get(name) for name in version.label_names]
    best = probs.argmax(axis=1)
    return {
        int(item_id): {"suggested_label_id": columns[best[i]], "suggested_confidence": float(probs[i, best[i]])}
        for i, item_id in enumerate(ids)
        if columns[best[i]] is not None
    }


def _finish(run, project, candidates: list[QueueCandidate], timings: dict) -> dict:
    started = time.perf_counter()
    with transaction.atomic():
        locked = ScoringRun.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None or locked.status != ScoringRun.Status.RUNNING:
            return {"run": run.pk, "status": "superseded"}
        report = queue_replace(project=project, candidates=candidates, strategy=locked.strategy, run=locked)
        timings["write"] = time.perf_counter() - started
        locked.status = ScoringRun.Status.SUCCEEDED
        locked.selected = report.written
        locked.explored = QueueEntry.objects.filter(run=locked, reason=QueueReason.EXPLORATION).count()
        locked.chunks_done = locked.n_chunks
        locked.timings = {key: round(value, 6) if isinstance(value, float) else value for key, value in timings.items()}
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "selected", "explored", "chunks_done", "timings", "finished_at"])
        started_at, scored_with = locked.started_at, locked.model_version_id
        transaction.on_commit(lambda: _follow_up(project, started_at, scored_with))
    return {
        "run": run.pk,
        "status": str(ScoringRun.Status.SUCCEEDED.value),
        "selected": report.written,
        "kept": report.kept,
        "removed": report.removed,
        "skipped": report.skipped,
    }


def _follow_up(project: Project, started_at, scored_with: int | None) -> None:
    """Embeddings written while the run was going were not scored, or another model became current
    meanwhile (a retrain or roll back): ask for one more run. Training jobs waiting on it finish."""
    from .loop import training_jobs_settle

    training_jobs_settle(project=project)
    current = selectors.model_version_current(project)
    model_changed = scored_with is not None and current is not None and current.pk != scored_with
    if model_changed or ItemEmbedding.objects.filter(project=project, updated_at__gt=started_at).exists():
        scoring_request(project=project, trigger="followup")
