"""The closed loop in-process: the retrain trigger and its debounce, training jobs through their stages,
lineage, the promotion gate on labels neither model saw, roll back, and the API and permissions."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from acquisition.models import ItemEmbedding, ModelVersion, ScoringRun, TrainingJob
from acquisition.selectors import new_labels_since_model
from acquisition.services import fitting, registry
from annotation import services
from annotation.models import Item, ItemStatus, LabelSource, QueueEntry, QueueReason, Role
from loop import tasks
from loop.services import training

from .pools import cluster_pool

pytestmark = pytest.mark.django_db

DIM = 8
PER_CLUSTER = 120


@pytest.fixture(autouse=True)
def small_committee(settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUORUM_COMMITTEE_MEMBERS = 3


@pytest.fixture
def sent(monkeypatch):
    """Training jobs and scoring runs sent to the broker (not run)."""
    calls = []
    monkeypatch.setattr(
        tasks.training_job_run,
        "apply_async",
        lambda args=None, kwargs=None, **options: calls.append(("train", args[0], options.get("queue"))),
    )
    monkeypatch.setattr(
        tasks.scoring_run_execute,
        "apply_async",
        lambda args=None, kwargs=None, **options: calls.append(("score", args[0], options.get("queue"))),
    )
    return calls


@pytest.fixture
def pool(make_project):
    """Three separable clusters of 120 items in 8-d, one per label."""
    project = make_project(
        "Loop", labels=("a", "b", "c"), embedding_dim=DIM, batch_size=12, retrain_after=30, exploration_fraction=0.25
    )
    cluster_pool(project, per_cluster=PER_CLUSTER, dim=DIM, scale=0.6)
    return project


def finalise(project, item_ids, *, shift=0, selected_as="", source=LabelSource.CONSENSUS, when=None):
    """Final labels for items: their cluster's label, or ``shift`` classes further (wrong labels)."""
    labels = list(project.labels.order_by("order", "pk"))
    for pk in item_ids:
        Item.objects.filter(pk=pk).update(
            final_label=labels[(project.cluster_of[pk] + shift) % 3],
            final_confidence=1.0,
            final_source=source,
            status=ItemStatus.FINALIZED,
            finalized_at=when or timezone.now(),
            selected_as=selected_as,
        )


def take(project, per_cluster, start=0):
    return [pk for c in range(3) for pk in project.by_cluster[c][start : start + per_cluster]]


def run_job(project, trigger="manual"):
    job = training.training_job_request(project=project, trigger=trigger)
    assert job is not None
    training.training_job_execute(job.pk)
    job.refresh_from_db()
    return job


# ------------------------------------------------------------------------------- the trigger
def test_retrain_is_due_after_retrain_after_new_final_labels(pool, sent, django_capture_on_commit_callbacks):
    finalise(pool, take(pool, 9))  # 27 < 30
    assert training.retrain_if_due(project=pool) is None
    finalise(pool, take(pool, 1, start=9))  # 30
    with django_capture_on_commit_callbacks(execute=True):
        job = training.retrain_if_due(project=pool)
        assert training.retrain_if_due(project=pool) is None  # debounced: one active job per project
        assert training.training_job_request(project=pool, trigger="manual") is None
    assert job.trigger == "labels" and job.n_new_labels == 30 and job.status == TrainingJob.Status.PENDING
    assert sent == [("train", job.pk, "default")]


def test_labels_are_counted_since_the_newest_models_snapshot(pool, sent, django_capture_on_commit_callbacks):
    finalise(pool, take(pool, 10))
    run_job(pool)
    assert new_labels_since_model(pool) == 0
    finalise(pool, take(pool, 5, start=10))
    assert new_labels_since_model(pool) == 15
    assert training.retrain_if_due(project=pool) is None
    finalise(pool, take(pool, 5, start=15))
    with django_capture_on_commit_callbacks(execute=True):
        assert training.retrain_if_due(project=pool) is not None


def test_the_aggregation_task_triggers_retraining(pool, sent, django_capture_on_commit_callbacks):
    finalise(pool, take(pool, 10))
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.project_aggregate_task.run(pool.pk)
    job = TrainingJob.objects.get(project=pool)
    assert result["training_job"] == job.pk and sent == [("train", job.pk, "default")]


def test_a_lost_job_is_superseded(pool, sent):
    finalise(pool, take(pool, 10))
    job = training.training_job_request(project=pool, trigger="manual")
    TrainingJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=2))
    again = training.training_job_request(project=pool, trigger="manual")
    job.refresh_from_db()
    assert again is not None and job.status == TrainingJob.Status.FAILED and "superseded" in job.error


# ------------------------------------------------------------------------------------ a job
def test_a_job_trains_promotes_and_refills_the_queue(pool, sent):
    finalise(pool, take(pool, 10))
    job = run_job(pool)

    assert job.status == TrainingJob.Status.SUCCEEDED and job.stage == TrainingJob.Stage.DONE
    assert job.outcome == "promoted" and job.progress == 1.0 and job.finished_at is not None
    assert {"snapshot", "train", "evaluate", "promote", "score", "total"} <= set(job.timings)
    version = job.model_version
    assert version.status == ModelVersion.Status.CURRENT and version.job_id == job.pk
    assert version.decision == "first model of the project"
    # the promoted model re-scored the pool in the same job and refilled the queue
    run = job.scoring_run
    assert run.status == ScoringRun.Status.SUCCEEDED and run.model_version_id == version.pk and run.trigger == "retrain"
    entries = QueueEntry.objects.filter(project=pool, run=run)
    assert entries.count() == pool.batch_size
    assert not entries.filter(item__final_label__isnull=False).exists()


def test_lineage_is_recorded(pool, sent):
    finalise(pool, take(pool, 10), selected_as=QueueReason.EXPLORATION)
    finalise(pool, take(pool, 40, start=10))
    version = run_job(pool).model_version
    assert version.n_labels == 150 and version.n_train == 120
    held_out = np.frombuffer(bytes(version.eval_items), dtype="<i8")
    assert len(held_out) == version.n_eval == 30  # 20% of 150: exactly the exploration sample
    assert version.metrics["eval_sources"]["exploration"] == version.n_eval
    assert version.metrics["eval_unbiased"] is True
    assert version.metrics["eval"]["accuracy"] > 0.9 and set(version.metrics["eval"]) >= {"macro_f1", "ece"}
    assert len(version.label_snapshot_hash) == 64 and len(version.eval_set_hash) == 64
    assert version.labels_as_of is not None and version.code_version and version.device == "cpu"
    assert version.hyperparameters["n_members"] == 1 and version.seed == version.version
    assert version.weights.storage.exists(version.weights.name)


def test_training_is_deterministic_for_a_seed(pool):
    finalise(pool, take(pool, 20))
    first = fitting.model_fit(project=pool, seed=11)
    second = fitting.model_fit(project=pool, seed=11)
    a, b = registry.model_load(first), registry.model_load(second)
    X = np.random.default_rng(3).normal(size=(50, DIM)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(a.predict_proba(X)), np.asarray(b.predict_proba(X)))
    assert first.label_snapshot_hash == second.label_snapshot_hash and first.eval_items == second.eval_items


def test_the_gate_rejects_a_worse_model_and_keeps_the_queue(pool, sent):
    earlier = timezone.now() - timedelta(minutes=5)
    finalise(pool, take(pool, 10), when=earlier)  # correct labels
    first = run_job(pool).model_version
    queue_before = set(QueueEntry.objects.filter(project=pool).values_list("item_id", flat=True))
    # New labels: a correct exploration sample, and many wrong labels from the strategy's picks.
    finalise(pool, take(pool, 15, start=10), selected_as=QueueReason.EXPLORATION)
    finalise(pool, take(pool, 60, start=25), shift=1)

    job = run_job(pool)
    second = job.model_version
    first.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED and job.outcome == "rejected"
    assert second.status == ModelVersion.Status.REJECTED and first.status == ModelVersion.Status.CURRENT
    assert second.decision.startswith("rejected on") and "accuracy" in second.decision
    gate = second.metrics["gate"]
    assert gate["current_version"] == first.version and gate["n"] >= 20
    assert gate["current"]["accuracy"] > gate["candidate"]["accuracy"] + 0.1
    assert job.scoring_run is None  # a rejected model does not touch the queue
    assert set(QueueEntry.objects.filter(project=pool).values_list("item_id", flat=True)) == queue_before


def test_rollback_makes_an_earlier_version_current_and_rescores(
    pool, sent, admin_api, django_capture_on_commit_callbacks
):
    finalise(pool, take(pool, 10))
    first = run_job(pool).model_version
    finalise(pool, take(pool, 10, start=10))
    second = run_job(pool).model_version
    assert second.status == ModelVersion.Status.CURRENT
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(f"/api/v1/projects/{pool.pk}/model-versions/{first.version}/promote")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "current" and "replacing v2" in response.json()["decision"]
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == ModelVersion.Status.CURRENT and second.status == ModelVersion.Status.RETIRED
    run = ScoringRun.objects.filter(project=pool, trigger="rollback").get()
    assert ("score", run.pk, None) in sent
    # promoting the current version again changes nothing
    again = admin_api.post(f"/api/v1/projects/{pool.pk}/model-versions/{first.version}/promote")
    assert again.status_code == 200
    assert ScoringRun.objects.filter(project=pool, trigger="rollback").count() == 1


def test_a_failed_version_cannot_be_promoted(pool, admin_api):
    ModelVersion.objects.create(project=pool, version=1, status="failed", label_names=["a", "b", "c"])
    response = admin_api.post(f"/api/v1/projects/{pool.pk}/model-versions/1/promote")
    assert response.status_code == 409 and response.json()["code"] == "not_promotable"
    assert admin_api.post(f"/api/v1/projects/{pool.pk}/model-versions/9/promote").status_code == 404


def test_finetune_without_a_gpu_trains_heads_and_says_so(pool, sent, django_capture_on_commit_callbacks):
    pool.training_mode = "finetune"
    pool.save(update_fields=["training_mode"])
    finalise(pool, take(pool, 10))
    with django_capture_on_commit_callbacks(execute=True):
        job = training.training_job_request(project=pool, trigger="manual")
    assert sent == [("train", job.pk, "gpu")] and job.mode == "finetune"
    training.training_job_execute(job.pk)
    version = ModelVersion.objects.get(project=pool)
    assert version.kind == "heads" and "no GPU" in version.decision.replace("has none", "no GPU")


# ------------------------------------------------------------------------------------ the API
JOB_FIELDS = {
    "id",
    "status",
    "stage",
    "progress",
    "trigger",
    "mode",
    "requested_by",
    "n_new_labels",
    "model_version_number",
    "outcome",
    "scoring_run",
    "timings",
    "error",
    "created_at",
    "started_at",
    "finished_at",
}


def test_train_now_through_the_api(pool, sent, admin_api, admin_user, django_capture_on_commit_callbacks):
    url = f"/api/v1/projects/{pool.pk}/training-jobs"
    response = admin_api.post(url)
    assert response.status_code == 400 and response.json()["code"] == "no_labels"
    finalise(pool, take(pool, 10))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(url)
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == JOB_FIELDS and body["trigger"] == "manual" and body["requested_by"] == admin_user.username
    conflict = admin_api.post(url)
    assert conflict.status_code == 409 and conflict.json()["active_job"] == body["id"]
    status = admin_api.get(f"/api/v1/projects/{pool.pk}/training").json()
    assert status["new_labels"] == 30 and status["retrain_after"] == 30 and status["active_job"]["id"] == body["id"]

    training.training_job_execute(body["id"])
    detail = admin_api.get(f"{url}/{body['id']}").json()
    assert detail["status"] == "succeeded" and detail["model_version_number"] == 1 and detail["progress"] == 1.0
    assert [job["id"] for job in admin_api.get(url).json()["results"]] == [body["id"]]
    version = admin_api.get(f"/api/v1/projects/{pool.pk}/model-versions/1").json()
    assert version["status"] == "current" and version["job"] == body["id"] and version["weights_stored"] is True
    assert admin_api.get(f"/api/v1/projects/{pool.pk}/model-versions/2").status_code == 404


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, None])
def test_training_endpoints_check_roles(pool, make_user, api_for, role):
    user = make_user("someone")
    if role:
        services.membership_set(project=pool, username="someone", role=role)
    api = api_for(user)
    base = f"/api/v1/projects/{pool.pk}"
    read = api.get(f"{base}/training-jobs").status_code
    train = api.post(f"{base}/training-jobs").status_code
    promote = api.post(f"{base}/model-versions/1/promote").status_code
    if role is None:
        assert (read, train, promote) == (404, 404, 404)
    elif role == Role.REVIEWER:
        assert (read, train, promote) == (200, 403, 403)
    else:
        assert (read, train, promote) == (403, 403, 403)


def test_labels_without_vectors_fail_the_job_with_a_clear_reason(pool, sent):
    """Labels that land before their items are embedded: nothing to train on yet (this used to fail
    with a NumPy reshape error)."""
    ItemEmbedding.objects.filter(project=pool).delete()
    finalise(pool, take(pool, 10))
    job = training.training_job_request(project=pool, trigger="manual")
    result = training.training_job_execute(job.pk)
    job.refresh_from_db()
    assert result["status"] == "failed" and job.status == TrainingJob.Status.FAILED
    assert job.error == "the project has no final labels with an embedding to train on"
    assert not ModelVersion.objects.filter(project=pool).exists()


def test_serving_model_is_refitted_on_every_label(pool, sent):
    finalise(pool, take(pool, 10), selected_as=QueueReason.EXPLORATION)
    finalise(pool, take(pool, 40, start=10))
    version = run_job(pool).model_version
    assert version.n_eval == 30 and version.metrics["serving_trained_on"] == "all labels"
    registry._MODELS.clear()  # read both back from storage
    serving, held_out = registry.model_load(version), registry.model_load(version, role="evaluation")
    assert serving is not held_out
    X = np.random.default_rng(5).normal(size=(20, DIM)).astype(np.float32)
    assert not np.allclose(serving.predict_proba(X), held_out.predict_proba(X))  # fitted on different labels
