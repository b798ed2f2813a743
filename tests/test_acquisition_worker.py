"""The loop's model side on a real Celery worker process: push a pool through the API, the worker
embeds it and scores it, and the queue fills; large pools go through a chord of chunk tasks."""

import pytest

from acquisition.models import ItemEmbedding, ScoringRun
from annotation.models import EmbeddingState, Item, ItemStatus, LabelSource, QueueEntry, QueueReason
from loop.services.training import model_train

from .worker import celery_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WORDS = ["card", "refund", "parcel", "password", "loan", "transfer", "cash", "fee", "pin", "account"]


def records(n, prefix="w"):
    return [
        {"external_id": f"{prefix}-{i}", "text": f"{WORDS[i % 10]} question {i} about my {WORDS[(i * 3) % 10]}"}
        for i in range(n)
    ]


def train_on_gold(project, n: int = 9) -> None:
    """The first ``n`` items become gold (labels in turn), then a model is trained on them."""
    labels = list(project.labels.order_by("order"))
    for i, item in enumerate(Item.objects.filter(project=project).order_by("pk")[:n]):
        Item.objects.filter(pk=item.pk).update(
            final_label=labels[i % len(labels)],
            final_confidence=1.0,
            final_source=LabelSource.GOLD,
            status=ItemStatus.FINALIZED,
        )
    model_train(project=project)


def succeeded_run(project, log_path, *, after=0):
    def done():
        run = ScoringRun.objects.filter(project=project, pk__gt=after).order_by("pk").first()
        if run is not None and run.status == ScoringRun.Status.FAILED:
            raise AssertionError(f"scoring run failed: {run.error}\n{log_path.read_text()}")
        return run if run is not None and run.status == ScoringRun.Status.SUCCEEDED else None

    return wait_for(done, timeout=120, what=f"a succeeded scoring run\n{log_path.read_text()}")


def test_pushed_pool_is_embedded_and_scored_into_the_queue_by_a_worker(admin_api, project, tmp_path):
    project.encoder = "hashing:4"
    project.batch_size = 20
    project.save(update_fields=["encoder", "batch_size"])

    with celery_worker(tmp_path) as (process, log_path):
        response = admin_api.post(f"/api/v1/projects/{project.pk}/items", records(60), format="json")
        assert response.status_code == 201, response.content
        run = succeeded_run(project, log_path)
        assert process.poll() is None

    assert not Item.objects.filter(project=project).exclude(embedding_state=EmbeddingState.READY).exists()
    assert ItemEmbedding.objects.filter(project=project, source="hashing:4").count() == 60
    entries = QueueEntry.objects.filter(project=project)
    assert entries.count() == 20 == run.selected
    assert entries.filter(reason=QueueReason.COLD_START).count() == 18
    assert entries.filter(reason=QueueReason.EXPLORATION).count() == 2 == run.explored
    assert run.trigger == "ingest" and run.progress == 1.0 and run.n_items == 60
    log = log_path.read_text()
    assert "acquisition.tasks.items_embed[" in log and "acquisition.tasks.scoring_run_execute[" in log

    detail = admin_api.get(f"/api/v1/projects/{project.pk}/scoring-runs/{run.pk}").json()
    assert detail["status"] == "succeeded" and detail["selected"] == 20


def test_a_large_pool_is_scored_by_a_chord_of_chunks_on_the_worker(admin_api, project, tmp_path, monkeypatch):
    monkeypatch.setenv("QUORUM_SCORING_CHUNK", "15")  # read by the worker process at start-up
    project.encoder = "hashing:4"
    project.batch_size = 8
    project.acquisition_strategy = "margin"
    project.save(update_fields=["encoder", "batch_size", "acquisition_strategy"])

    with celery_worker(tmp_path) as (process, log_path):
        admin_api.post(f"/api/v1/projects/{project.pk}/items", records(60), format="json")
        first = succeeded_run(project, log_path)  # cold start (no model yet)

        train_on_gold(project)
        response = admin_api.post(f"/api/v1/projects/{project.pk}/scoring-runs", {}, format="json")
        assert response.status_code == 202, response.content
        run = succeeded_run(project, log_path, after=first.pk)
        assert process.poll() is None

    assert run.pk == response.json()["id"] and run.model_version is not None
    assert run.n_items == 51 and run.n_chunks == 4 and run.chunks_done == 4
    entries = QueueEntry.objects.filter(project=project, run=run)
    assert entries.count() == 8
    assert entries.filter(reason=QueueReason.ACQUISITION).count() == 7
    assert not entries.filter(suggested_label__isnull=True).exists()
    assert "acquisition.tasks.scoring_chunk_score[" in log_path.read_text()
