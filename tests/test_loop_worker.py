"""The whole loop on a real Celery worker process and the configured broker: a project and a pool
pushed through the API, embeddings and a cold-start queue from the worker, annotators labelling
through the API up to the retrain threshold, then aggregation, training, a promoted model version and
a queue the new model re-ordered — with nobody calling a task by hand."""

import pytest

from acquisition.models import ModelVersion, ScoringRun, TrainingJob
from annotation import services
from annotation.models import AgreementSnapshot, Item, QueueEntry, QueueReason, Role

from .worker import celery_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TEMPLATES = {
    "refund": "please refund order {i} money back for purchase",
    "card_lost": "my card {i} was lost or stolen block card",
    "other": "what time do branches open on day {i}",
}


def pool(n_per_class):
    return [
        {"external_id": f"{label}-{i}", "text": template.format(i=i)}
        for i in range(n_per_class)
        for label, template in TEMPLATES.items()
    ]


def queue_order(project_id):
    return list(
        QueueEntry.objects.filter(project_id=project_id).order_by("-priority", "id").values_list("item_id", flat=True)
    )


def test_labels_through_the_api_retrain_promote_and_reorder_the_queue(
    admin_api, make_user, token_api, tmp_path, monkeypatch, settings
):
    monkeypatch.setenv("QUORUM_AGGREGATION_DELAY_SECONDS", "1")  # the worker process reads it at start
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 1
    project_id, annotators = _loop_project(
        admin_api, make_user, token_api, name="Loop end to end", labels=list(TEMPLATES)
    )

    with celery_worker(tmp_path) as (process, log_path):

        def log():
            return log_path.read_text()

        assert admin_api.post(f"/api/v1/projects/{project_id}/items", pool(40), format="json").status_code == 201
        cold = wait_for(
            lambda: ScoringRun.objects.filter(project_id=project_id, status="succeeded").first(),
            timeout=120,
            what=f"the cold-start scoring run\n{log()}",
        )
        assert cold.model_version is None
        before = queue_order(project_id)
        assert len(before) == 10
        assert QueueEntry.objects.filter(project_id=project_id, reason=QueueReason.COLD_START).count() == 8

        # Simulated annotators label through the API, truthfully, until 10 items are final.
        def final_count():
            return Item.objects.filter(project_id=project_id, final_label__isnull=False).count()

        def label_some():
            for api in annotators:
                answer = api.post(f"/api/v1/projects/{project_id}/next", {}, format="json")
                assert answer.status_code == 200, answer.content
                assignment = answer.json()["assignment"]
                if assignment is None:
                    continue
                truth = assignment["item"]["external_id"].rsplit("-", 1)[0]
                submitted = api.post(
                    f"/api/v1/assignments/{assignment['id']}/annotation", {"label": truth}, format="json"
                )
                assert submitted.status_code == 201, submitted.content
            return final_count() >= 10

        wait_for(label_some, timeout=120, interval=0.05, what=f"10 final labels\n{log()}")

        job = wait_for(
            lambda: TrainingJob.objects.filter(project_id=project_id, status__in=["succeeded", "failed"]).first(),
            timeout=180,
            what=f"a finished training job\n{log()}",
        )
        assert job.status == "succeeded", f"{job.error}\n{log()}"
        assert process.poll() is None

    assert AgreementSnapshot.objects.filter(project_id=project_id).exists()
    assert job.trigger == "labels" and job.outcome == "promoted" and job.n_new_labels >= 10
    version = job.model_version
    assert version.status == ModelVersion.Status.CURRENT and version.version == 1 and version.n_labels >= 10
    run = job.scoring_run
    assert run is not None and run.status == "succeeded" and run.model_version_id == version.pk
    entries = QueueEntry.objects.filter(project_id=project_id, labels_taken=0)
    assert entries.exists() and set(entries.values_list("run_id", flat=True)) == {run.pk}
    assert set(entries.values_list("reason", flat=True)) <= {QueueReason.ACQUISITION, QueueReason.EXPLORATION}
    after = queue_order(project_id)
    assert after != before
    assert not entries.filter(suggested_label__isnull=True).exists()  # the new model's suggestions
    text = log_path.read_text()
    for task in ("annotation.tasks.project_aggregate_task[", "acquisition.tasks.training_job_run["):
        assert task in text


def _loop_project(admin_api, make_user, token_api, **fields):
    """A project made through the API for the loop (hashing encoder, batches of 10, two labels per
    item, retraining after 10), with two annotators holding API tokens: ``(project id, [clients])``."""
    body = {
        "encoder": "hashing:64",
        "embedding_dim": 64,
        "batch_size": 10,
        "labels_per_item": 2,
        "retrain_after": 10,
        "acquisition_strategy": "margin",
        "exploration_fraction": 0.2,
        **fields,
    }
    response = admin_api.post("/api/v1/projects", body, format="json")
    assert response.status_code == 201, response.content
    project_id = response.json()["id"]
    annotators = []
    for name in ("ann1", "ann2"):
        make_user(name)
        services.membership_set(project=_project(project_id), username=name, role=Role.ANNOTATOR)
        annotators.append(token_api(_user(name)))
    return project_id, annotators


def _project(project_id):
    from annotation.models import Project

    return Project.objects.get(pk=project_id)


def _user(username):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


TAG_TEMPLATES = {
    ("refund",): "please refund order {i} money back for purchase",
    ("card_lost",): "my card {i} was lost or stolen block card",
    ("refund", "complaint"): "refund order {i} now this service is awful and slow",
    (): "what time do branches open on day {i}",
}


def test_a_multi_label_project_runs_the_loop_on_tag_sets(
    admin_api, make_user, token_api, tmp_path, monkeypatch, settings
):
    """The same loop for tag sets: the pool pushed with a few known sets, annotators answering with
    ``labels``, per-tag aggregation, a one-vs-rest head promoted and a queue re-scored with tag-set
    suggestions."""
    monkeypatch.setenv("QUORUM_AGGREGATION_DELAY_SECONDS", "1")
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 1
    project_id, annotators = _loop_project(
        admin_api,
        make_user,
        token_api,
        name="Tags end to end",
        labels=["refund", "card_lost", "complaint"],
        task_type="multi_label",
    )
    truth = {}
    records = []
    for i in range(30):
        for n, (tags, template) in enumerate(TAG_TEMPLATES.items()):
            external_id = f"s{n}-{i}"
            truth[external_id] = list(tags)
            records.append({"external_id": external_id, "text": template.format(i=i)})
    # (known sets on push are covered by tests/test_multilabel_api.py: here every label counts toward
    # the retrain threshold, so the first job starts when the annotators stop, as in the test above)

    with celery_worker(tmp_path) as (process, log_path):

        def log():
            return log_path.read_text()

        assert admin_api.post(f"/api/v1/projects/{project_id}/items", records, format="json").status_code == 201
        wait_for(
            lambda: ScoringRun.objects.filter(project_id=project_id, status="succeeded").first(),
            timeout=120,
            what=f"the first scoring run\n{log()}",
        )

        def decided():
            return Item.objects.filter(project_id=project_id, final_source="consensus").count()

        def label_some():
            for api in annotators:
                answer = api.post(f"/api/v1/projects/{project_id}/next", {}, format="json")
                assert answer.status_code == 200, answer.content
                assignment = answer.json()["assignment"]
                if assignment is None:
                    continue
                submitted = api.post(
                    f"/api/v1/assignments/{assignment['id']}/annotation",
                    {"labels": truth[assignment["item"]["external_id"]]},
                    format="json",
                )
                assert submitted.status_code == 201, submitted.content
            return decided() >= 10

        wait_for(label_some, timeout=120, interval=0.05, what=f"10 decided tag sets\n{log()}")
        job = wait_for(
            lambda: TrainingJob.objects.filter(project_id=project_id, status__in=["succeeded", "failed"]).first(),
            timeout=180,
            what=f"a finished training job\n{log()}",
        )
        assert job.status == "succeeded", f"{job.error}\n{log()}"
        wait_for(
            lambda: AgreementSnapshot.objects.filter(project_id=project_id).exists(),
            timeout=60,
            what=f"an aggregation\n{log()}",
        )
        wait_for(
            lambda: QueueEntry.objects.filter(
                project_id=project_id, labels_taken=0, run__model_version__status=ModelVersion.Status.CURRENT
            ).exists(),
            timeout=120,
            what=f"a queue scored by the promoted model\n{log()}",
        )
        assert process.poll() is None

    snapshot = AgreementSnapshot.objects.filter(project_id=project_id).order_by("-computed_at").first()
    assert snapshot.method == "binary_relevance_ds"
    consensus = Item.objects.filter(project_id=project_id, final_source="consensus")
    names = dict(_project(project_id).labels.values_list("pk", "name"))
    assert all(sorted(names[t] for t in item.final_tags) == sorted(truth[item.external_id]) for item in consensus)
    assert job.outcome == "promoted" and job.model_version.hyperparameters["head"]["kind"] == "one_vs_rest"
    current = ModelVersion.objects.get(project_id=project_id, status=ModelVersion.Status.CURRENT)
    assert "subset_accuracy" in current.metrics["eval"] or current.metrics["eval"]["n"] == 0
    entries = QueueEntry.objects.filter(project_id=project_id, labels_taken=0, run__model_version=current)
    assert entries.exists()
    assert not entries.filter(suggested_tags__isnull=True).exists()  # the new model's tag sets
