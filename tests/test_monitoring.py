"""/healthz, /readyz and /metrics: what they check, what they report, and the metrics token."""

import pytest

from acquisition.models import TaskStat
from annotation.models import QueueEntry
from loop import tasks
from quorum import monitoring
from tests.invariants import enqueue, make_items

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_the_database_and_the_broker(client, monkeypatch):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"database": "ok", "broker": "ok"}

    def broker_down():
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(monitoring, "_check_broker", broker_down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "ConnectionRefusedError: [Errno 111] Connection refused"}


def test_metrics_report_requests_queues_annotations_and_tasks(client, project, admin_api):
    enqueue(project, make_items(project, 3))
    QueueEntry.objects.filter(project=project).update(labels_needed=2)
    admin_api.get(f"/api/v1/projects/{project.pk}")  # a request through the middleware
    tasks.retrain_if_due.apply(args=(project.pk,), throw=True)  # a task through the worker signals

    response = client.get("/metrics")
    body = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert 'django_http_requests_latency_seconds_by_view_method_count{method="GET",view="api-project"}' in body
    assert f'quorum_queue_open_slots{{project="{project.pk}"}} 6.0' in body  # 3 entries × 2 labels
    assert f'quorum_items{{project="{project.pk}",status="queued"}} 3.0' in body
    assert 'quorum_jobs_active{kind="training"} 0.0' in body
    assert 'quorum_celery_tasks_total{outcome="succeeded",task="acquisition.tasks.retrain_if_due"} 1.0' in body
    assert "quorum_celery_task_seconds_total" in body
    assert TaskStat.objects.get(task="acquisition.tasks.retrain_if_due", outcome="succeeded").count == 1


def test_open_slots_count_labels_still_needed_not_entries(client, project, member, api_for):
    """Two annotators each lease one of four entries needing 3, 2, 2 and 1 labels: 8 − 2 = 6 open
    slots, in 4 entries (the gauge used to count the entries)."""
    enqueue(project, make_items(project, 4))
    entries = list(QueueEntry.objects.filter(project=project).order_by("-priority"))
    for entry, needed in zip(entries, (3, 2, 2, 1), strict=True):
        QueueEntry.objects.filter(pk=entry.pk).update(labels_needed=needed)
    for name in ("ann-1", "ann-2"):
        response = api_for(member(name)).post(f"/api/v1/projects/{project.pk}/next", {}, format="json")
        assert response.status_code in (200, 201), response.content
    taken = sum(QueueEntry.objects.filter(project=project).values_list("labels_taken", flat=True))
    assert taken == 2

    body = client.get("/metrics").content.decode()
    assert f'quorum_queue_open_slots{{project="{project.pk}"}} 6.0' in body


def test_failed_tasks_are_counted(project):
    result = tasks.scoring_run_execute.apply(args=("not-a-run-id",))
    assert result.state == "FAILURE"
    stat = TaskStat.objects.get(task="acquisition.tasks.scoring_run_execute", outcome="failed")
    assert stat.count == 1 and stat.seconds_max >= 0


def test_metrics_token(client, settings):
    settings.QUORUM_METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
