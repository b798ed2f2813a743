"""The members page: reviewers see the members; admins add an existing account, create one with a
password or an invitation link, change roles and remove members, with errors named per field."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from annotation.models import Membership, Role

pytestmark = pytest.mark.django_db

STRONG = "correct-horse-battery-42"


def url(project) -> str:
    return f"/projects/{project.pk}/members"


def test_reviewers_see_the_members_but_cannot_change_them(client_for, project, member):
    reviewer = member("rita", Role.REVIEWER)
    member("ann")
    client = client_for(reviewer)
    page = client.get(url(project))
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-member="ann"' in body and 'data-member="alice"' in body
    assert 'data-testid="member-add"' not in body  # no form for reviewers
    response = client.post(url(project), {"action": "add", "username": "ann2", "role": "annotator"})
    assert response.status_code == 403
    assert not get_user_model().objects.filter(username="ann2").exists()


def test_annotators_get_403_and_strangers_404(client_for, project, member, make_user):
    assert client_for(member("ann")).get(url(project)).status_code == 403
    assert client_for(make_user("stranger")).get(url(project)).status_code == 404
    assert client_for(None).get(url(project)).status_code == 302  # to the login page


def test_admin_creates_an_account_with_a_password(client_for, project, admin_user):
    client = client_for(admin_user)
    response = client.post(
        url(project),
        {"action": "add", "username": "newbie", "email": "n@example.org", "password": STRONG, "role": "annotator"},
        follow=True,
    )
    assert response.status_code == 200
    assert "can sign in now" in response.content.decode()
    user = get_user_model().objects.get(username="newbie")
    assert user.check_password(STRONG)
    assert Membership.objects.get(project=project, user=user).role == Role.ANNOTATOR


def test_admin_invites_without_a_password_and_the_link_works(client_for, project, admin_user):
    client = client_for(admin_user)
    response = client.post(
        url(project),
        {"action": "add", "username": "invitee", "email": "i@example.org", "role": "reviewer"},
        follow=True,
    )
    body = response.content.decode()
    link = re.search(r"http://testserver(/accounts/invite/[^\s<\"]+)", body)
    assert link, body
    user = get_user_model().objects.get(username="invitee")
    assert not user.has_usable_password()
    assert Membership.objects.get(project=project, user=user).role == Role.REVIEWER
    invite = client_for(None).get(link.group(1), follow=True)
    assert invite.status_code == 200 and "password" in invite.content.decode().lower()


def test_admin_adds_an_existing_account_and_changes_its_role_then_removes_it(
    client_for, project, admin_user, make_user
):
    make_user("bob")
    client = client_for(admin_user)
    client.post(url(project), {"action": "add", "username": "bob", "role": "annotator"})
    assert Membership.objects.get(project=project, user__username="bob").role == Role.ANNOTATOR
    client.post(url(project), {"action": "role", "username": "bob", "role": "reviewer"})
    assert Membership.objects.get(project=project, user__username="bob").role == Role.REVIEWER
    client.post(url(project), {"action": "remove", "username": "bob"})
    assert not Membership.objects.filter(project=project, user__username="bob").exists()
    assert get_user_model().objects.filter(username="bob").exists()  # the account stays


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"username": "", "role": "annotator"}, "username", "required"),
        ({"username": "carl", "role": "annotator"}, "email", "e-mail"),  # new account without an address
        ({"username": "carl", "email": "nope", "role": "annotator"}, "email", "valid email"),
        ({"username": "carl", "email": "c@example.org", "password": "123", "role": "annotator"}, "password", ""),
        ({"username": "bad name!", "email": "c@example.org", "role": "annotator"}, "username", ""),
        ({"username": "carl", "email": "c@example.org", "role": "boss"}, "role", "valid choice"),
        ({"username": "alice", "email": "a@example.org", "role": "annotator"}, "username", "exists already"),
    ],
)
def test_bad_input_names_the_field_and_adds_nobody(client_for, project, admin_user, data, field, message):
    before = get_user_model().objects.count(), Membership.objects.count()
    response = client_for(admin_user).post(url(project), {"action": "add", **data})
    assert response.status_code == 400
    body = response.content.decode()
    error = re.search(rf'id="error_{field}">([^<]*)<', body)
    assert error, body
    assert message.lower() in error.group(1).lower()
    assert (get_user_model().objects.count(), Membership.objects.count()) == before


def test_a_project_admin_gives_new_accounts_annotator_or_reviewer_only(client_for, project, member):
    project_admin = member("pat", Role.ADMIN)  # an admin of the project, not staff
    response = client_for(project_admin).post(
        url(project),
        {"action": "add", "username": "boss", "email": "b@example.org", "password": STRONG, "role": "admin"},
    )
    assert response.status_code == 400
    assert 'id="error_role"' in response.content.decode()
    assert not get_user_model().objects.filter(username="boss").exists()


def test_the_last_admin_cannot_be_removed_and_the_page_says_why(client_for, project, admin_user):
    response = client_for(admin_user).post(url(project), {"action": "remove", "username": "alice"}, follow=True)
    assert "last admin" in response.content.decode()
    assert Membership.objects.get(project=project, user=admin_user).role == Role.ADMIN
