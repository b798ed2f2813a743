"""/api/v1/projects/{id}/members: who is in a project with which role."""

import pytest

from annotation.models import Membership, Role

pytestmark = pytest.mark.django_db


def members_url(project, username: str | None = None) -> str:
    url = f"/api/v1/projects/{project.pk}/members"
    return f"{url}/{username}" if username else url


def roles(project) -> dict[str, str]:
    return dict(Membership.objects.filter(project=project).values_list("user__username", "role"))


# --- adding and changing members ------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN])
def test_add_a_member_by_username(admin_api, make_user, project, role):
    bob = make_user("bob")
    response = admin_api.post(members_url(project), {"username": "bob", "role": role}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["username"], body["user_id"], body["role"]) == ("bob", bob.pk, role)
    assert "created_at" in body
    assert roles(project) == {"alice": "admin", "bob": role}


def test_posting_again_changes_the_role(admin_api, make_user, project):
    make_user("bob")
    admin_api.post(members_url(project), {"username": "bob", "role": "annotator"}, format="json")
    response = admin_api.post(members_url(project), {"username": "bob", "role": "reviewer"}, format="json")
    assert response.status_code == 200
    assert response.json()["role"] == "reviewer"
    same = admin_api.post(members_url(project), {"username": "bob", "role": "reviewer"}, format="json")
    assert same.status_code == 200
    assert roles(project) == {"alice": "admin", "bob": "reviewer"}
    assert Membership.objects.filter(project=project, user__username="bob").count() == 1


def test_unknown_or_inactive_username_is_400(admin_api, make_user, project):
    response = admin_api.post(members_url(project), {"username": "ghost", "role": "annotator"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"username": "no active user named 'ghost'", "code": "unknown_user"}

    sleeper = make_user("sleeper")
    sleeper.is_active = False
    sleeper.save()
    response = admin_api.post(members_url(project), {"username": "sleeper", "role": "annotator"}, format="json")
    assert response.status_code == 400
    assert roles(project) == {"alice": "admin"}


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"username": "bob", "role": "owner"}, "role"),
        ({"username": "bob", "role": "ADMIN"}, "role"),
        ({"username": "bob", "role": ""}, "role"),
        ({"username": "bob"}, "role"),
        ({"role": "annotator"}, "username"),
        ({"username": "", "role": "annotator"}, "username"),
    ],
)
def test_invalid_member_requests_are_400(admin_api, make_user, project, payload, field):
    make_user("bob")
    response = admin_api.post(members_url(project), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert roles(project) == {"alice": "admin"}


def test_patch_role(admin_api, member, project):
    member("bob", Role.ANNOTATOR)
    response = admin_api.patch(members_url(project, "bob"), {"role": "admin"}, format="json")
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert roles(project)["bob"] == "admin"

    bad = admin_api.patch(members_url(project, "bob"), {"role": "boss"}, format="json")
    assert bad.status_code == 400 and "role" in bad.json()
    assert roles(project)["bob"] == "admin"


def test_patch_of_a_non_member_is_404_and_adds_nobody(admin_api, make_user, project):
    make_user("bob")
    response = admin_api.patch(members_url(project, "bob"), {"role": "admin"}, format="json")
    assert response.status_code == 404
    assert roles(project) == {"alice": "admin"}


def test_delete_member(api_for, admin_api, member, project):
    bob = member("bob", Role.REVIEWER)
    response = admin_api.delete(members_url(project, "bob"))
    assert response.status_code == 204
    assert roles(project) == {"alice": "admin"}
    # Removed members lose access (and see a 404, not a 403).
    assert api_for(bob).get(f"/api/v1/projects/{project.pk}").status_code == 404
    assert admin_api.delete(members_url(project, "bob")).status_code == 404


def test_delete_unknown_member_is_404(admin_api, project):
    response = admin_api.delete(members_url(project, "ghost"))
    assert response.status_code == 404
    assert response.json()["username"] == "'ghost' is not a member of this project"


# --- the last admin -------------------------------------------------------------------------


def test_the_last_admin_cannot_be_removed(admin_api, member, project):
    member("bob", Role.REVIEWER)
    response = admin_api.delete(members_url(project, "alice"))
    assert response.status_code == 400
    assert response.json()["code"] == "last_admin"
    assert "last admin" in response.json()["role"]
    assert roles(project) == {"alice": "admin", "bob": "reviewer"}


@pytest.mark.parametrize("via", ["patch", "post"])
@pytest.mark.parametrize("new_role", [Role.REVIEWER, Role.ANNOTATOR])
def test_the_last_admin_cannot_be_demoted(admin_api, project, via, new_role):
    if via == "patch":
        response = admin_api.patch(members_url(project, "alice"), {"role": new_role}, format="json")
    else:
        response = admin_api.post(members_url(project), {"username": "alice", "role": new_role}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "last_admin"
    assert roles(project) == {"alice": "admin"}


def test_an_admin_can_step_down_once_another_admin_exists(api_for, admin_api, member, project):
    member("bob", Role.ADMIN)
    assert admin_api.patch(members_url(project, "alice"), {"role": "reviewer"}, format="json").status_code == 200
    assert roles(project) == {"alice": "reviewer", "bob": "admin"}
    # alice is a reviewer now: she can read members but no longer change anything.
    assert admin_api.get(members_url(project)).status_code == 200
    assert admin_api.patch(f"/api/v1/projects/{project.pk}", {"batch_size": 3}, format="json").status_code == 403
    assert admin_api.delete(members_url(project, "bob")).status_code == 403


def test_an_admin_may_leave_when_another_admin_remains(admin_api, member, project):
    member("bob", Role.ADMIN)
    assert admin_api.delete(members_url(project, "alice")).status_code == 204
    assert roles(project) == {"bob": "admin"}


# --- reading, and who may write -------------------------------------------------------------


def test_list_members(api_for, admin_api, member, project):
    member("zoe", Role.ANNOTATOR)
    bob = member("bob", Role.REVIEWER)
    expected = [("alice", "admin"), ("bob", "reviewer"), ("zoe", "annotator")]  # by username
    for api in (admin_api, api_for(bob)):
        response = api.get(members_url(project))
        assert response.status_code == 200
        assert [(row["username"], row["role"]) for row in response.json()] == expected
    detail = api_for(bob).get(members_url(project, "zoe"))
    assert detail.status_code == 200 and detail.json()["role"] == "annotator"
    assert admin_api.get(members_url(project, "nobody")).status_code == 404


def test_annotators_cannot_list_members(api_for, member, project):
    api = api_for(member("ann", Role.ANNOTATOR))
    assert api.get(members_url(project)).status_code == 403
    assert api.get(members_url(project, "alice")).status_code == 403


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER])
def test_non_admins_cannot_change_members(api_for, make_user, member, project, role):
    api = api_for(member("m", role))
    make_user("newcomer")
    assert api.post(members_url(project), {"username": "newcomer", "role": "admin"}, format="json").status_code == 403
    assert api.post(members_url(project), {"username": "m", "role": "admin"}, format="json").status_code == 403
    assert api.patch(members_url(project, "m"), {"role": "admin"}, format="json").status_code == 403
    assert api.patch(members_url(project, "alice"), {"role": "annotator"}, format="json").status_code == 403
    assert api.delete(members_url(project, "alice")).status_code == 403
    assert roles(project) == {"alice": "admin", "m": role}


def test_non_members_get_404_on_member_endpoints(api_for, make_user, project):
    api = api_for(make_user("mallory", staff=True))
    make_user("accomplice")
    assert api.get(members_url(project)).status_code == 404
    assert api.post(members_url(project), {"username": "mallory", "role": "admin"}, format="json").status_code == 404
    assert api.patch(members_url(project, "alice"), {"role": "annotator"}, format="json").status_code == 404
    assert api.delete(members_url(project, "alice")).status_code == 404
    assert roles(project) == {"alice": "admin"}


def test_superuser_manages_members_without_being_one(api_for, make_user, project):
    api = api_for(make_user("root", superuser=True))
    make_user("bob")
    assert api.get(members_url(project)).status_code == 200
    assert api.post(members_url(project), {"username": "bob", "role": "admin"}, format="json").status_code == 201
    assert api.delete(members_url(project, "alice")).status_code == 204
    assert roles(project) == {"bob": "admin"}


def test_members_by_token(admin_user, make_user, project, token_api):
    make_user("bob")
    api = token_api(admin_user)
    assert api.post(members_url(project), {"username": "bob", "role": "reviewer"}, format="json").status_code == 201
    assert [row["username"] for row in api.get(members_url(project)).json()] == ["alice", "bob"]


def test_usernames_with_dots_and_at_signs(admin_api, make_user, project):
    make_user("jane.doe@example.com")
    assert (
        admin_api.post(
            members_url(project), {"username": "jane.doe@example.com", "role": "annotator"}, format="json"
        ).status_code
        == 201
    )
    response = admin_api.patch(members_url(project, "jane.doe@example.com"), {"role": "reviewer"}, format="json")
    assert response.status_code == 200
    assert admin_api.delete(members_url(project, "jane.doe@example.com")).status_code == 204
