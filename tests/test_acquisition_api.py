"""Scoring-run and model-version endpoints: permissions, shapes, 202/409."""

from datetime import timedelta

import pytest
from django.utils import timezone

from acquisition.models import ModelVersion, ScoringRun
from annotation.models import Role
from loop import tasks

pytestmark = pytest.mark.django_db

RUN_FIELDS = {
    "id",
    "status",
    "strategy",
    "trigger",
    "model_version",
    "model_version_number",
    "progress",
    "n_items",
    "n_chunks",
    "chunks_done",
    "selected",
    "explored",
    "timings",
    "error",
    "created_at",
    "started_at",
    "finished_at",
}


@pytest.fixture
def enqueued(monkeypatch):
    sent = []
    monkeypatch.setattr(
        tasks.scoring_run_execute, "apply_async", lambda args=None, kwargs=None, **options: sent.append(args[0])
    )
    return sent


def url(project, suffix=""):
    return f"/api/v1/projects/{project.pk}/scoring-runs{suffix}"


def test_admin_requests_a_run_and_gets_202_then_409_while_it_is_active(
    admin_api, project, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(url(project), {}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == RUN_FIELDS
    assert body["status"] == "pending" and body["trigger"] == "manual" and body["strategy"] == "msal"
    assert body["progress"] == 0.0
    assert enqueued == [body["id"]]

    again = admin_api.post(url(project), {"trigger": "manual"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "scoring_run_active" and again.json()["active_run"] == body["id"]
    assert ScoringRun.objects.filter(project=project).count() == 1


def test_a_stale_active_run_does_not_block_a_new_one(admin_api, project, enqueued):
    stale = ScoringRun.objects.create(project=project, strategy="msal", status=ScoringRun.Status.RUNNING)
    old = timezone.now() - timedelta(days=1)
    ScoringRun.objects.filter(pk=stale.pk).update(created_at=old, started_at=old)

    response = admin_api.post(url(project), {}, format="json")

    assert response.status_code == 202
    stale.refresh_from_db()
    assert stale.status == ScoringRun.Status.FAILED and "superseded" in stale.error


def test_list_newest_first_and_detail_shapes(api_for, member, project, make_project):
    reviewer = member("rita", Role.REVIEWER)
    first = ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    second = ScoringRun.objects.create(
        project=project,
        strategy="margin",
        status=ScoringRun.Status.RUNNING,
        n_chunks=4,
        chunks_done=1,
        timings={"load": 0.5},
    )
    other = ScoringRun.objects.create(project=make_project("Other"), strategy="margin")
    api = api_for(reviewer)

    listing = api.get(url(project))
    assert listing.status_code == 200
    results = listing.json()["results"]
    assert [r["id"] for r in results] == [second.pk, first.pk]
    assert set(results[0]) == RUN_FIELDS

    detail = api.get(url(project, f"/{second.pk}")).json()
    assert detail["progress"] == 0.25 and detail["timings"] == {"load": 0.5} and detail["status"] == "running"
    assert api.get(url(project, f"/{first.pk}")).json()["progress"] == 1.0
    assert api.get(url(project, f"/{other.pk}")).status_code == 404


def test_permissions(api_for, member, project, make_user, enqueued):
    annotator = api_for(member("ann", Role.ANNOTATOR))
    reviewer = api_for(member("rev", Role.REVIEWER))
    stranger = api_for(make_user("stranger"))
    anonymous = api_for(None)
    models_url = f"/api/v1/projects/{project.pk}/model-versions"

    assert annotator.get(url(project)).status_code == 403
    assert annotator.get(models_url).status_code == 403
    assert reviewer.get(url(project)).status_code == 200
    assert reviewer.post(url(project), {}, format="json").status_code == 403
    assert stranger.get(url(project)).status_code == 404
    assert stranger.post(url(project), {}, format="json").status_code == 404
    assert stranger.get(models_url).status_code == 404
    assert anonymous.get(url(project)).status_code in (401, 403)
    assert api_for(member("adm", Role.ADMIN)).get("/api/v1/projects/999999/scoring-runs").status_code == 404
    assert not ScoringRun.objects.exists()


def test_model_versions_newest_first(api_for, member, project):
    reviewer = api_for(member("rev", Role.REVIEWER))
    ModelVersion.objects.create(project=project, version=1, status="current", label_names=["a", "b"], n_labels=10)
    ModelVersion.objects.create(project=project, version=2, status="candidate", label_names=["a", "b"], n_labels=20)
    response = reviewer.get(f"/api/v1/projects/{project.pk}/model-versions")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["version"] for r in results] == [2, 1]
    assert results[1]["status"] == "current" and results[1]["label_names"] == ["a", "b"]
    assert "weights" not in results[0]


def test_bad_trigger_is_a_400(admin_api, project):
    response = admin_api.post(url(project), {"trigger": "x" * 40}, format="json")
    assert response.status_code == 400
