"""Scoring runs end to end, in-process: cold start, every strategy, queue replacement, one active
run per project, chunked (chord) vs inline, training, the MSAL min-distance cache."""

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from acquisition import embeddings, strategies
from acquisition.models import ItemEmbedding, ModelVersion, ScoringRun
from acquisition.services import registry
from acquisition.services import scoring as compute
from annotation.models import EmbeddingState, Item, ItemStatus, LabelSource, QueueEntry, QueueReason
from loop import tasks
from loop.services import scoring, training
from quorum.celery import app

pytestmark = pytest.mark.django_db

DIM = 8
PER_CLUSTER = 40


@pytest.fixture(autouse=True)
def cache_dir(settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.QUORUM_COMMITTEE_MEMBERS = 3


@pytest.fixture
def eager():
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


@pytest.fixture
def pool(make_project):
    """Three well-separated clusters of 40 items in 8-d, one per label."""
    project = make_project("Pool", labels=("a", "b", "c"), embedding_dim=DIM, batch_size=6, exploration_fraction=0.34)
    rng = np.random.default_rng(0)
    centers = np.eye(DIM, dtype=np.float32)[:3] * 3
    items = Item.objects.bulk_create(
        [
            Item(project=project, external_id=f"c{c}-{i}", text=f"cluster {c} item {i}", text_hash=f"{c}-{i}")
            for c in range(3)
            for i in range(PER_CLUSTER)
        ]
    )
    vectors = np.concatenate([centers[c] + rng.normal(scale=0.3, size=(PER_CLUSTER, DIM)) for c in range(3)])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("<f4")
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(item=item, project=project, vector=vectors[i].tobytes(), dim=DIM, source="test")
            for i, item in enumerate(items)
        ]
    )
    Item.objects.filter(project=project).update(embedding_state=EmbeddingState.READY)
    project.cluster_of = {item.pk: i // PER_CLUSTER for i, item in enumerate(items)}
    project.item_ids = [item.pk for item in items]
    return project


def label(project, item_ids):
    """Give items the final label of their cluster (as consensus would)."""
    labels = list(project.labels.order_by("order", "pk"))
    for pk in item_ids:
        Item.objects.filter(pk=pk).update(
            final_label=labels[project.cluster_of[pk]],
            final_confidence=0.9,
            final_source=LabelSource.CONSENSUS,
            status=ItemStatus.FINALIZED,
            finalized_at=timezone.now(),
        )


def run_scoring(project, *, seed=7, chunk_size=None):
    run = compute.scoring_run_create(project=project, trigger="test")
    assert run is not None
    result = scoring.scoring_run_execute(run.pk, seed=seed, chunk_size=chunk_size)
    run.refresh_from_db()
    return run, result


def queue_of(project):
    return list(
        QueueEntry.objects.filter(project=project)
        .order_by("-priority", "id")
        .values_list("item_id", "reason", "priority", "suggested_label_id", "run_id")
    )


def trained(project, per_cluster=4):
    label(project, [pk for c in range(3) for pk in project.item_ids[c * PER_CLUSTER : c * PER_CLUSTER + per_cluster]])
    version = training.model_train(project=project)
    assert version.status == ModelVersion.Status.CURRENT
    return version


def test_cold_start_picks_a_diverse_batch(pool):
    run, result = run_scoring(pool)

    assert run.status == ScoringRun.Status.SUCCEEDED, run.error
    assert run.model_version is None and run.n_items == 3 * PER_CLUSTER
    entries = QueueEntry.objects.filter(project=pool)
    assert entries.count() == pool.batch_size == run.selected
    cold = [e.item_id for e in entries if e.reason == QueueReason.COLD_START]
    assert len(cold) == 4 and entries.filter(reason=QueueReason.EXPLORATION).count() == 2 == run.explored
    assert {pool.cluster_of[pk] for pk in cold} == {0, 1, 2}  # k-center reaches every cluster
    assert all(e.suggested_label_id is None for e in entries)
    assert set(Item.objects.filter(pk__in=[e.item_id for e in entries]).values_list("status", flat=True)) == {
        ItemStatus.QUEUED
    }
    assert run.progress == 1.0 and run.chunks_done == run.n_chunks == 1
    assert {"load", "select", "write"} <= set(run.timings)


def test_fewer_labels_than_classes_is_still_a_cold_start(pool):
    label(pool, pool.item_ids[:1])
    ModelVersion.objects.create(project=pool, version=1, status="current", label_names=["a", "b", "c"])
    run, _ = run_scoring(pool)
    assert run.status == ScoringRun.Status.SUCCEEDED and run.model_version is None
    assert QueueEntry.objects.filter(project=pool, reason=QueueReason.COLD_START).count() == 4


def test_training_records_a_current_version_then_gates_the_next(pool):
    version = trained(pool)
    assert version.version == 1 and version.n_labels == 12
    assert version.label_names == ["a", "b", "c"]
    assert version.hyperparameters["n_members"] == 1 and version.seed == 1  # msal: one head on all labels
    assert len(version.label_snapshot_hash) == 64 and version.train_seconds >= 0
    assert version.weights.name and version.weights.storage.exists(version.weights.name)
    model = registry.model_load(version)
    matrix = embeddings.embeddings_load(pool)
    predicted = model.predict(np.array(matrix.vectors))
    clusters = np.array([pool.cluster_of[pk] for pk in matrix.ids])
    assert (predicted == clusters).mean() > 0.9

    assert version.decision == "first model of the project" and version.parent is None
    assert version.n_train + version.n_eval == 12 and version.labels_as_of is not None

    # The same labels again: the gate lets it through (too few held-out labels to judge), the first
    # version retires, and the lineage names it.
    second = training.model_train(project=pool)
    version.refresh_from_db()
    assert second.version == 2 and second.status == ModelVersion.Status.CURRENT
    assert version.status == ModelVersion.Status.RETIRED and second.parent_id == version.pk
    assert second.label_snapshot_hash == version.label_snapshot_hash
    assert "promoted without a gate" in second.decision


@pytest.mark.parametrize(
    "strategy", ["msal", "margin", "entropy", "least_confidence", "bald", "qbc", "coreset", "random"]
)
def test_each_strategy_fills_the_queue_with_a_batch(pool, strategy):
    version = trained(pool)
    pool.acquisition_strategy = strategy
    pool.save(update_fields=["acquisition_strategy"])

    run, _ = run_scoring(pool)

    assert run.status == ScoringRun.Status.SUCCEEDED, run.error
    assert run.strategy == strategy and run.model_version_id == version.pk
    entries = list(QueueEntry.objects.filter(project=pool))
    assert len(entries) == pool.batch_size == run.selected
    assert sum(e.reason == QueueReason.EXPLORATION for e in entries) == 2 == run.explored
    assert sum(e.reason == QueueReason.ACQUISITION for e in entries) == 4
    assert all(e.strategy == strategy and e.run_id == run.pk for e in entries)
    assert all(e.suggested_label_id is not None and 0 < e.suggested_confidence <= 1 for e in entries)
    labelled = set(Item.objects.filter(project=pool, final_label__isnull=False).values_list("pk", flat=True))
    assert not labelled & {e.item_id for e in entries}
    assert {"load", "predict", "score", "select", "write"} <= set(run.timings)
    # exploration picks are spread through the batch, not parked at its end
    order = [reason for _, reason, *_ in queue_of(pool)]
    assert order[-1] != QueueReason.EXPLORATION or order[-2] != QueueReason.EXPLORATION


def test_margin_queue_is_the_top_of_the_margin_scores(pool):
    version = trained(pool)
    pool.acquisition_strategy = "margin"
    pool.exploration_fraction = 0.0
    pool.save(update_fields=["acquisition_strategy", "exploration_fraction"])

    run_scoring(pool)

    candidates = np.array(
        sorted(set(pool.item_ids) - set(pool.item_ids[0:4]) - set(pool.item_ids[40:44]) - set(pool.item_ids[80:84]))
    )
    matrix = embeddings.embeddings_load(pool)
    scores = strategies.margin(
        registry.model_load(version).predict_proba_members(matrix.vectors[matrix.positions(candidates)])
    )
    expected = candidates[strategies.top_k(scores, pool.batch_size).numpy()]
    assert [e[0] for e in queue_of(pool)] == expected.tolist()


def test_msal_batch_is_diverse_within_itself(pool, settings):
    settings.QUORUM_MSAL_ALPHA = 1.0  # distance weighs as much as uncertainty on this toy pool
    trained(pool)
    pool.acquisition_strategy = "msal"
    pool.exploration_fraction = 0.0
    pool.save(update_fields=["acquisition_strategy", "exploration_fraction"])
    run_scoring(pool)
    picked = [e[0] for e in queue_of(pool)]
    assert {pool.cluster_of[pk] for pk in picked} == {0, 1, 2}


def test_second_run_replaces_untouched_entries_only(pool):
    trained(pool)
    first, _ = run_scoring(pool, seed=1)
    started = QueueEntry.objects.filter(project=pool).order_by("-priority").first()
    QueueEntry.objects.filter(pk=started.pk).update(labels_taken=1)

    second, result = run_scoring(pool, seed=2)

    assert second.status == ScoringRun.Status.SUCCEEDED
    assert result["kept"] == 1 and result["removed"] == pool.batch_size - 1
    entries = QueueEntry.objects.filter(project=pool)
    assert entries.get(item_id=started.item_id).run_id == first.pk  # the started entry survived
    assert entries.exclude(item_id=started.item_id).count() == pool.batch_size
    assert set(entries.exclude(item_id=started.item_id).values_list("run_id", flat=True)) == {second.pk}
    # items that left the queue are back in the pool
    assert not Item.objects.filter(project=pool, status=ItemStatus.QUEUED).exclude(queue_entry__isnull=False).exists()


def test_one_active_run_per_project(pool, make_project, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(
        tasks.scoring_run_execute, "apply_async", lambda args=None, kwargs=None, **options: sent.append(args[0])
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = scoring.scoring_request(project=pool, trigger="test")
        assert scoring.scoring_request(project=pool, trigger="test") is None
    assert sent == [run.pk]
    with pytest.raises(IntegrityError), transaction.atomic():  # the database refuses a second one
        ScoringRun.objects.create(project=pool, strategy="msal", status=ScoringRun.Status.RUNNING)
    assert scoring.scoring_request(project=make_project("Other"), trigger="test") is not None

    scoring.scoring_run_execute(run.pk, seed=1)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.SUCCEEDED
    assert scoring.scoring_run_execute(run.pk)["status"] == "skipped"  # a redelivered message is harmless
    assert scoring.scoring_request(project=pool, trigger="test") is not None


def test_a_failing_run_is_marked_failed_and_does_not_block_the_next(pool, monkeypatch):
    trained(pool)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(compute, "model_load", broken)
    run = compute.scoring_run_create(project=pool, trigger="test")
    with pytest.raises(RuntimeError):
        scoring.scoring_run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.FAILED and "disk on fire" in run.error and run.finished_at
    assert not QueueEntry.objects.filter(project=pool).exists()
    monkeypatch.undo()
    again, _ = run_scoring(pool)
    assert again.status == ScoringRun.Status.SUCCEEDED


def test_a_superseded_run_does_not_write(pool):
    run = compute.scoring_run_create(project=pool, trigger="test")
    original = scoring._finish

    def superseded_meanwhile(run, *args):
        ScoringRun.objects.filter(pk=run.pk).update(status=ScoringRun.Status.FAILED, error="superseded")
        return original(run, *args)

    scoring._finish = superseded_meanwhile
    try:
        assert scoring.scoring_run_execute(run.pk)["status"] == "superseded"
    finally:
        scoring._finish = original
    assert not QueueEntry.objects.filter(project=pool).exists()


def test_empty_pool_succeeds_with_an_empty_queue(make_project):
    project = make_project("Empty")
    run, _ = run_scoring(project)
    assert run.status == ScoringRun.Status.SUCCEEDED and run.selected == 0 and run.n_items == 0


@pytest.mark.parametrize("strategy", ["margin", "qbc", "msal", "coreset", "random"])
def test_chunked_chord_and_inline_runs_write_the_same_queue(pool, eager, strategy):
    trained(pool)
    pool.acquisition_strategy = strategy
    pool.save(update_fields=["acquisition_strategy"])

    inline, _ = run_scoring(pool, seed=11)
    inline_queue = [(item, reason, priority, label) for item, reason, priority, label, _ in queue_of(pool)]
    chunked, result = run_scoring(pool, seed=11, chunk_size=25)
    chunked_queue = [(item, reason, priority, label) for item, reason, priority, label, _ in queue_of(pool)]

    assert inline.n_chunks == 1
    assert chunked.status == ScoringRun.Status.SUCCEEDED, chunked.error
    assert chunked.n_chunks == 5 and chunked.chunks_done == 5 and chunked.progress == 1.0
    assert chunked_queue == inline_queue
    if strategy in ("msal", "coreset"):
        assert chunked.timings["greedy_exact"] is True


def test_msal_min_distance_cache_is_updated_with_new_labels_only(pool):
    label(pool, pool.item_ids[:3])
    matrix = embeddings.embeddings_load(pool)

    def brute(labelled):
        vectors = np.asarray(matrix.vectors)
        points = vectors[matrix.positions(labelled)]
        return np.sqrt(((vectors[:, None, :] - points[None]) ** 2).sum(-1)).min(1)

    first, stats = embeddings.min_distances_to_labelled(pool, matrix, np.array(pool.item_ids[:3]))
    assert stats.full
    np.testing.assert_allclose(first, brute(pool.item_ids[:3]), rtol=1e-5, atol=1e-6)

    more = pool.item_ids[:3] + pool.item_ids[50:52]
    second, stats = embeddings.min_distances_to_labelled(pool, matrix, np.array(more))
    assert not stats.full and stats.new_labelled == 2 and stats.rows_recomputed == 0
    np.testing.assert_allclose(second, brute(more), rtol=1e-5, atol=1e-6)

    # a changed vector is recomputed alone; a shrunken labelled set recomputes everything
    ItemEmbedding.objects.filter(item_id=pool.item_ids[100]).update(
        vector=np.ones(DIM, "<f4").tobytes(), updated_at=timezone.now()
    )
    matrix = embeddings.embeddings_load(pool)
    third, stats = embeddings.min_distances_to_labelled(pool, matrix, np.array(more))
    assert not stats.full and stats.rows_recomputed == 1 and stats.new_labelled == 0
    np.testing.assert_allclose(third, brute(more), rtol=1e-5, atol=1e-6)
    _, stats = embeddings.min_distances_to_labelled(pool, matrix, np.array(more[:2]))
    assert stats.full


def test_manual_command_trains_and_scores(pool, capsys):
    from django.core.management import call_command

    label(pool, [pool.item_ids[i] for i in (0, 1, 40, 41, 80, 81)])
    call_command("score", str(pool.pk), "--train", "--sync")
    out = capsys.readouterr().out
    assert "trained model v1" in out and "succeeded" in out
    assert QueueEntry.objects.filter(project=pool, reason=QueueReason.ACQUISITION).count() == 4
