"""Project settings validation reports every invalid field in one answer, with one wording per
bound, under the field that was changed (the REST API and the dashboard's settings form)."""

from __future__ import annotations

import re

import pytest

from annotation.models import Project

pytestmark = pytest.mark.django_db


def errors_of(response) -> dict:
    assert response.status_code == 400, response.content
    return {
        name: " ".join(map(str, value)) if isinstance(value, list) else value for name, value in response.json().items()
    }


def test_every_invalid_setting_is_reported_at_once(project, admin_api):
    url = f"/api/v1/projects/{project.pk}"
    body = errors_of(
        admin_api.patch(
            url,
            {"batch_size": -1, "eval_fraction": 0.9, "labels_per_item": 5, "lease_seconds": 0, "honeypot_rate": "x"},
            format="json",
        )
    )
    assert body["batch_size"] == "must be at least 1"
    assert body["eval_fraction"] == "must be between 0 and 0.5"
    assert body["lease_seconds"] == "must be at least 10"
    assert "honeypot_rate" in body
    # The cross-field check runs too, and names the field that was changed, not its partner.
    assert body["labels_per_item"] == "must be at most max_labels_per_item (3)"
    assert "max_labels_per_item" not in body
    project.refresh_from_db()
    assert (project.batch_size, project.labels_per_item, project.lease_seconds) == (50, 2, 600)


@pytest.mark.parametrize("value", [-1, 0])
def test_one_wording_whatever_the_bad_value(project, admin_api, value):
    body = errors_of(admin_api.patch(f"/api/v1/projects/{project.pk}", {"retrain_after": value}, format="json"))
    assert body == {"retrain_after": "must be at least 1"}


def test_kappa_thresholds_blame_the_changed_one(project, admin_api):
    url = f"/api/v1/projects/{project.pk}"
    body = errors_of(admin_api.patch(url, {"review_disagreements_below_kappa": -0.5}, format="json"))
    assert set(body) == {"review_disagreements_below_kappa"}
    assert body["review_disagreements_below_kappa"].startswith("must be at least review_all_below_kappa")


def test_dashboard_form_shows_every_error_under_its_field(project, admin_user, client_for):
    url = f"/projects/{project.pk}/dashboard"
    page = client_for(admin_user).get(url).content.decode()
    form = {
        name: value
        for name, value in re.findall(
            r'<input id="id_(\w+)" name="\w+" type="number" step="[^"]*" value="([^"]*)"', page
        )
    }
    assert "batch_size" in form
    form.update({"batch_size": "-3", "labels_per_item": "4", "min_honeypots": "0", "acquisition_strategy": "margin"})
    response = client_for(admin_user).post(url, form)
    assert response.status_code == 400
    page = response.content.decode()
    errors = dict(re.findall(r'<p class="error small" id="error_(\w+)">([^<]*)</p>', page))
    assert errors == {
        "batch_size": "must be at least 1",
        "labels_per_item": "must be at most max_labels_per_item (3)",
        "min_honeypots": "must be at least 1",
    }
    assert Project.objects.get(pk=project.pk).batch_size == 50
