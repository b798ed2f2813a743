"""Metadata that carries an answer (a pushed gold column) is never shown to annotators."""

from __future__ import annotations

import pytest

from annotation.models import Item
from tests.invariants import enqueue, make_items

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_refill(settings, recording_supply):
    settings.QUORUM_REFILL_THRESHOLD = 0


@pytest.fixture
def annie(member, api_for):
    return api_for(member("annie"))


def served_metadata(api, project):
    response = api.post(f"/api/v1/projects/{project.pk}/next", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["assignment"]["item"]["metadata"]


def test_answer_like_fields_are_hidden_by_default_and_admins_choose(project, annie, admin_api):
    items = make_items(project, 2)
    Item.objects.filter(pk__in=[i.pk for i in items]).update(metadata={"orig": "refund", "gold": "x", "shop": "web"})
    enqueue(project, items)
    assert served_metadata(annie, project) == {"shop": "web"}
    # the admin shows everything but hides the shop
    response = admin_api.patch(f"/api/v1/projects/{project.pk}", {"hidden_metadata": ["shop"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["hidden_metadata"] == ["shop"]
    assert served_metadata(annie, project) == {"orig": "refund", "gold": "x"}
    # the export and the engineers' item list still carry everything
    listed = admin_api.get(f"/api/v1/projects/{project.pk}/items").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows[0]["metadata"]["shop"] == "web"


def test_bad_field_names_are_a_400_naming_the_field(project, admin_api):
    response = admin_api.patch(f"/api/v1/projects/{project.pk}", {"hidden_metadata": "gold"}, format="json")
    assert response.status_code == 200 and response.json()["hidden_metadata"] == ["gold"]  # one name, as a form sends
    response = admin_api.patch(f"/api/v1/projects/{project.pk}", {"hidden_metadata": [{"a": 1}]}, format="json")
    assert response.status_code == 400 and "hidden_metadata" in str(response.json())


def test_dashboard_form_takes_comma_separated_names(project, admin_user, client):
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/dashboard")
    assert b'name="hidden_metadata"' in page.content and b"gold, label" in page.content
    form = {"hidden_metadata": " source , gold,,"}
    response = client.post(f"/projects/{project.pk}/dashboard", form)
    assert response.status_code == 302, response.content[:2000]
    project.refresh_from_db()
    assert project.hidden_metadata == ["gold", "source"]
