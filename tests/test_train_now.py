"""A "train now" without a new final label since the newest model version is refused (409
``no_new_labels``, a message on the models page): it would train the same labels into an identical
version."""

import pytest

from acquisition.models import ModelVersion, TrainingJob

from .test_training_loop import finalise, pool, run_job, sent, small_committee, take  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_api_refuses_to_train_the_same_labels_again(pool, sent, admin_api):  # noqa: F811
    url = f"/api/v1/projects/{pool.pk}/training-jobs"
    finalise(pool, take(pool, 10))
    assert run_job(pool).status == TrainingJob.Status.SUCCEEDED

    refused = admin_api.post(url)
    assert refused.status_code == 409, refused.content
    body = refused.json()
    assert body["code"] == "no_new_labels" and "v1" in body["detail"] and "label more items" in body["detail"]
    assert TrainingJob.objects.filter(project=pool).count() == 1  # nothing was requested

    finalise(pool, take(pool, 1, start=10))  # one new final label is enough
    assert admin_api.post(url).status_code == 202


def test_a_failed_version_does_not_count_as_trained(pool, sent, admin_api):  # noqa: F811
    finalise(pool, take(pool, 10))
    run_job(pool)
    ModelVersion.objects.filter(project=pool).update(status=ModelVersion.Status.FAILED)
    assert admin_api.post(f"/api/v1/projects/{pool.pk}/training-jobs").status_code == 202


def test_the_models_page_says_why_it_did_not_train(pool, sent, admin_user, client_for):  # noqa: F811
    client = client_for(admin_user)
    finalise(pool, take(pool, 10))
    run_job(pool)
    page = client.get(f"/projects/{pool.pk}/models").content.decode()
    assert 'data-testid="train-now-hint"' in page

    response = client.post(f"/projects/{pool.pk}/models/train", follow=True)
    page = response.content.decode()
    assert "Not trained: no new final labels since model version v1" in page
    assert TrainingJob.objects.filter(project=pool).count() == 1
