"""The models page: who sees it, what it shows, and the admins' "Train now" and "Make current" forms."""

import pytest

from acquisition.models import ModelVersion, TrainingJob
from annotation import services
from annotation.models import Role
from loop.services import training

from .test_training_loop import finalise, pool, run_job, sent, small_committee, take  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role, status", [(Role.ANNOTATOR, 403), (Role.REVIEWER, 200), (Role.ADMIN, 200), (None, 404)])
def test_who_sees_the_models_page(pool, make_user, client_for, role, status):  # noqa: F811
    user = make_user("visitor")
    if role:
        services.membership_set(project=pool, username="visitor", role=role)
    client = client_for(user)
    assert client.get(f"/projects/{pool.pk}/models").status_code == status
    # only admins may post, whatever they can see
    expected_post = {Role.ADMIN: 302, None: 404}.get(role, 403)
    assert client.post(f"/projects/{pool.pk}/models/train").status_code == expected_post
    assert client.post(f"/projects/{pool.pk}/models/1/promote").status_code == expected_post


def test_anonymous_users_are_sent_to_log_in(pool, client_for):  # noqa: F811
    response = client_for(None).get(f"/projects/{pool.pk}/models")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_page_shows_jobs_versions_and_the_gate(pool, sent, admin_user, client_for):  # noqa: F811
    finalise(pool, take(pool, 10))
    run_job(pool)
    finalise(pool, take(pool, 40, start=10))
    run_job(pool)
    response = client_for(admin_user).get(f"/projects/{pool.pk}/models")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="current-version">v2<' in page
    assert "Train now" in page and "Make current" in page  # v1 retired: can be made current again
    jobs = TrainingJob.objects.filter(project=pool).order_by("pk")
    assert "first model of the project" in page and all(f"#{job.pk}<" in page for job in jobs)
    assert 'http-equiv="refresh"' not in page  # nothing running


def test_reviewers_see_no_buttons_and_a_running_job_refreshes_the_page(pool, sent, make_user, client_for):  # noqa: F811
    make_user("rev")
    services.membership_set(project=pool, username="rev", role=Role.REVIEWER)
    finalise(pool, take(pool, 10))
    training.training_job_request(project=pool, trigger="manual")
    page = (
        client_for(pool.memberships.get(user__username="rev").user).get(f"/projects/{pool.pk}/models").content.decode()
    )
    assert "Train now" not in page and 'http-equiv="refresh"' in page


def test_train_now_and_make_current_forms(pool, sent, admin_user, client_for, django_capture_on_commit_callbacks):  # noqa: F811
    client = client_for(admin_user)
    response = client.post(f"/projects/{pool.pk}/models/train", follow=True)
    assert "no final labels" in response.content.decode()
    finalise(pool, take(pool, 10))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{pool.pk}/models/train", follow=True)
    assert "Training job requested" in response.content.decode()
    job = TrainingJob.objects.get(project=pool)
    assert job.requested_by == admin_user and job.trigger == "manual"
    response = client.post(f"/projects/{pool.pk}/models/train", follow=True)
    assert "already pending or running" in response.content.decode()
    training.training_job_execute(job.pk)
    finalise(pool, take(pool, 10, start=10))
    run_job(pool)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{pool.pk}/models/1/promote", follow=True)
    assert "Model v1 is current" in response.content.decode()
    assert ModelVersion.objects.get(project=pool, version=1).status == ModelVersion.Status.CURRENT
    response = client.post(f"/projects/{pool.pk}/models/7/promote", follow=True)
    assert "no model version 7" in response.content.decode()
