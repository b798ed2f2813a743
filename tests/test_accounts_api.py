"""POST /api/v1/users: creating annotators and reviewers (password or invitation link)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from annotation.models import Membership, Role

pytestmark = pytest.mark.django_db

URL = "/api/v1/users"
STRONG = "correct-horse-battery-42"


def test_staff_create_an_annotator_with_a_password_and_a_membership(admin_api, project):
    body = {"username": "newbie", "email": "newbie@example.org", "password": STRONG, "project": project.pk}
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["username"], data["project"], data["role"], data["invitation_url"]) == (
        "newbie",
        project.pk,
        Role.ANNOTATOR,
        None,
    )
    user = get_user_model().objects.get(username="newbie")
    assert user.check_password(STRONG) and user.email == "newbie@example.org"
    assert Membership.objects.get(user=user, project=project).role == Role.ANNOTATOR
    assert Client().login(username="newbie", password=STRONG)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "alice", "email": "a@example.org", "password": STRONG}, "username"),  # taken
        ({"username": "ALICE", "email": "a@example.org", "password": STRONG}, "username"),  # taken, other case
        ({"username": "bad name!", "email": "a@example.org", "password": STRONG}, "username"),
        ({"username": "bob", "email": "not-an-address", "password": STRONG}, "email"),
        ({"username": "bob", "password": STRONG}, "email"),
        ({"username": "bob", "email": "b@example.org", "password": "123"}, "password"),
        ({"username": "bob", "email": "b@example.org", "password": "bob-example"}, "password"),
        ({"username": "bob", "email": "b@example.org", "password": STRONG, "project": 10**9}, "project"),
        ({"username": "bob", "email": "b@example.org", "password": STRONG, "role": "reviewer"}, "project"),
        ({"username": "bob", "email": "b@example.org", "password": STRONG, "project": 1, "role": "boss"}, "role"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(admin_api, project, body, field):
    if body.get("project") == 1:
        body["project"] = project.pk
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert get_user_model().objects.filter(username="bob").count() == 0


def test_failed_membership_leaves_no_account(admin_api, project, monkeypatch):
    from annotation.services import accounts  # the module whose write this test makes fail

    def broken(**kwargs):
        raise RuntimeError("membership write failed")

    monkeypatch.setattr(accounts.Membership.objects, "create", broken)
    with pytest.raises(RuntimeError):
        admin_api.post(URL, {"username": "bob", "email": "b@example.org", "password": STRONG, "project": project.pk})
    assert not get_user_model().objects.filter(username="bob").exists()


def test_anonymous_and_non_staff_are_refused(api_for, member, project):
    body = {"username": "bob", "email": "b@example.org", "password": STRONG}
    assert api_for(None).post(URL, body, format="json").status_code in (401, 403)
    annotator = member("ann")
    assert api_for(annotator).post(URL, body, format="json").status_code == 403
    reviewer = member("rev", Role.REVIEWER)
    assert api_for(reviewer).post(URL, {**body, "project": project.pk}, format="json").status_code == 403
    assert not get_user_model().objects.filter(username="bob").exists()


def test_a_project_admin_creates_annotators_and_reviewers_of_their_project(api_for, member, project, make_project):
    boss = member("boss", Role.ADMIN)
    api = api_for(boss)
    body = {"username": "rev2", "email": "r@example.org", "password": STRONG, "project": project.pk, "role": "reviewer"}
    assert api.post(URL, body, format="json").status_code == 201
    admin_role = {**body, "username": "adm2", "role": "admin"}
    response = api.post(URL, admin_role, format="json")
    assert response.status_code == 400 and "role" in response.json()["errors"]
    elsewhere = make_project("Elsewhere")
    assert api.post(URL, {**body, "username": "x2", "project": elsewhere.pk}, format="json").status_code == 403
    assert api.post(URL, {**body, "username": "x3", "project": None}, format="json").status_code in (400, 403)


def test_invitation_link_lets_the_invitee_set_a_password_once(admin_api, project):
    body = {"username": "invitee", "email": "i@example.org", "project": project.pk, "role": "reviewer"}
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    link = response.json()["invitation_url"]
    assert link.startswith("http://testserver/accounts/invite/")
    user = get_user_model().objects.get(username="invitee")
    assert not user.has_usable_password()
    assert Membership.objects.get(user=user, project=project).role == Role.REVIEWER

    browser = Client()
    page = browser.get(link, follow=True)
    assert page.status_code == 200 and b"Choose your password" in page.content
    form_url = page.redirect_chain[-1][0]
    weak = browser.post(form_url, {"new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200 and b"too short" in weak.content
    done = browser.post(form_url, {"new_password1": STRONG, "new_password2": STRONG})
    assert done.status_code == 302 and done["Location"] == "/accounts/login/"
    user.refresh_from_db()
    assert user.check_password(STRONG)
    assert Client().login(username="invitee", password=STRONG)

    again = Client().get(link, follow=True)
    assert b"invalid or has already been used" in again.content
