"""/api/v1/projects: create, list, detail, change, delete; who may do what; auth; docs and pages."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from annotation.ingest_records import text_digest
from annotation.models import Item, ItemStatus, LabelClass, Membership, Project, Role
from annotation.services.projects import SHORTCUT_KEYS

pytestmark = pytest.mark.django_db

PROJECTS = "/api/v1/projects"


def project_url(project_or_id) -> str:
    return f"{PROJECTS}/{getattr(project_or_id, 'pk', project_or_id)}"


def labels_of(project):
    return list(LabelClass.objects.filter(project=project).order_by("order").values_list("name", "shortcut", "order"))


# --- create ---------------------------------------------------------------------------------


def test_create_with_just_a_name_and_labels(admin_api, admin_user, settings):
    response = admin_api.post(PROJECTS, {"name": "Intents", "labels": ["refund", "card_lost"]}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert isinstance(body["id"], int)
    project = Project.objects.get(pk=body["id"])
    assert project.name == "Intents" and project.created_by == admin_user

    # Defaults, in the response and in the database.
    expected = {
        "task_type": "text_classification",
        "acquisition_strategy": "msal",
        "batch_size": 50,
        "exploration_fraction": 0.1,
        "labels_per_item": 2,
        "max_labels_per_item": 3,
        "review_all_below_kappa": 0.6,
        "review_disagreements_below_kappa": 0.8,
        "min_consensus_confidence": 0.8,
        "retrain_after": 100,
        "lease_seconds": 600,
        "training_mode": "heads",
        "eval_fraction": 0.2,
        "promotion_tolerance": 0.02,
        "instructions": "",
        "encoder": settings.QUORUM_ENCODER,
        "embedding_dim": settings.QUORUM_EMBEDDING_DIM,
    }
    assert {key: body[key] for key in expected} == expected
    assert {key: getattr(project, key) for key in expected} == expected
    assert body["my_role"] == "admin"
    assert body["item_counts"]["total"] == 0
    assert [(label["name"], label["shortcut"], label["order"]) for label in body["labels"]] == [
        ("refund", "1", 0),
        ("card_lost", "2", 1),
    ]
    # The creator is the project's admin.
    assert Membership.objects.get(project=project).user == admin_user
    assert Membership.objects.get(project=project).role == Role.ADMIN


def test_settings_given_at_creation(admin_api):
    payload = {
        "name": "Tuned",
        "labels": ["a", "b"],
        "instructions": "Pick one.",
        "acquisition_strategy": "margin",
        "batch_size": 20,
        "exploration_fraction": 0.25,
        "labels_per_item": 3,
        "max_labels_per_item": 5,
        "embedding_dim": 8,
        "encoder": "hashing:8",
    }
    response = admin_api.post(PROJECTS, payload, format="json")
    assert response.status_code == 201, response.json()
    project = Project.objects.get(pk=response.json()["id"])
    for key, value in payload.items():
        if key != "labels":
            assert getattr(project, key) == value


def test_shortcuts_auto_assigned_skipping_reserved_keys(admin_api):
    names = [f"label-{n:02d}" for n in range(37)]
    response = admin_api.post(PROJECTS, {"name": "Many", "labels": names}, format="json")
    assert response.status_code == 201
    shortcuts = [label["shortcut"] for label in response.json()["labels"]]
    assert shortcuts[:12] == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "a", "b"]
    assert "s" not in shortcuts and "u" not in shortcuts
    assert shortcuts[27:30] == ["r", "t", "v"]  # s and u skipped
    assert shortcuts[:34] == list(SHORTCUT_KEYS)
    assert len(set(shortcuts[:34])) == 34
    assert shortcuts[34:] == ["", "", ""]  # keys run out: no shortcut rather than a clash


def test_labels_as_objects_with_shortcut_and_description(admin_api):
    labels = [
        {"name": "refund", "shortcut": "R", "description": "Money back"},
        "card_lost",
        {"name": "other", "shortcut": "1"},
        {"name": "  padded  "},
    ]
    response = admin_api.post(PROJECTS, {"name": "Objects", "labels": labels}, format="json")
    assert response.status_code == 201, response.json()
    got = [(label["name"], label["shortcut"], label["description"]) for label in response.json()["labels"]]
    # Explicit keys are kept (lower-cased); the others get the next free key.
    assert got == [("refund", "r", "Money back"), ("card_lost", "2", ""), ("other", "1", ""), ("padded", "3", "")]


@pytest.mark.parametrize(
    "payload, field, message",
    [
        ({"name": "P"}, "labels", "This field is required."),
        ({"name": "P", "labels": []}, "labels", None),
        ({"labels": ["a"]}, "name", "This field is required."),
        ({"name": "", "labels": ["a"]}, "name", None),
        ({"name": "P", "labels": ["refund", "refund"]}, "labels", "label 'refund' repeats 'refund'"),
        ({"name": "P", "labels": ["Refund", "refund"]}, "labels", "label 'refund' repeats 'Refund'"),
        ({"name": "P", "labels": ["refund", " REFUND "]}, "labels", "label 'REFUND' repeats 'refund'"),
        (
            {"name": "P", "labels": [{"name": "a", "shortcut": "s"}]},
            "labels",
            "shortcut 's' of 'a' is reserved (s: skip, u: undo)",
        ),
        (
            {"name": "P", "labels": [{"name": "a", "shortcut": "U"}]},
            "labels",
            "shortcut 'u' of 'a' is reserved (s: skip, u: undo)",
        ),
        (
            {"name": "P", "labels": [{"name": "a", "shortcut": "1"}, {"name": "b", "shortcut": "1"}]},
            "labels",
            "shortcut '1' of 'b' is already used by 'a'",
        ),
        ({"name": "P", "labels": [{"name": "a", "shortcut": "ab"}]}, "labels", None),
        ({"name": "P", "labels": [{"name": "a", "shortcut": "!"}]}, "labels", None),
        ({"name": "P", "labels": [{"name": "a", "colour": "red"}]}, "labels", None),
        ({"name": "P", "labels": [{"shortcut": "1"}]}, "labels", None),
        ({"name": "P", "labels": [""]}, "labels", None),
        ({"name": "P", "labels": [5]}, "labels", None),
        ({"name": "P", "labels": ["x" * 101]}, "labels", None),
        ({"name": "P", "labels": "refund"}, "labels", None),
        (
            {"name": "P", "labels": ["a"], "labels_per_item": 4},
            "labels_per_item",
            "must be at most max_labels_per_item (3)",
        ),
        (
            {"name": "P", "labels": ["a"], "labels_per_item": 3, "max_labels_per_item": 2},
            "max_labels_per_item",
            "must be at least labels_per_item",
        ),
        ({"name": "P", "labels": ["a"], "labels_per_item": 0}, "labels_per_item", None),
        (
            {"name": "P", "labels": ["a"], "exploration_fraction": 1.5},
            "exploration_fraction",
            "must be between 0 and 1",
        ),
        (
            {"name": "P", "labels": ["a"], "exploration_fraction": -0.1},
            "exploration_fraction",
            "must be between 0 and 1",
        ),
        (
            {"name": "P", "labels": ["a"], "min_consensus_confidence": 2},
            "min_consensus_confidence",
            "must be between 0 and 1",
        ),
        (
            {"name": "P", "labels": ["a"], "review_all_below_kappa": 0.9},
            "review_all_below_kappa",
            "must be at most review_disagreements_below_kappa",
        ),
        (
            {"name": "P", "labels": ["a"], "review_disagreements_below_kappa": 1.5},
            "review_disagreements_below_kappa",
            None,
        ),
        ({"name": "P", "labels": ["a"], "batch_size": 0}, "batch_size", None),
        ({"name": "P", "labels": ["a"], "retrain_after": 0}, "retrain_after", None),
        ({"name": "P", "labels": ["a"], "lease_seconds": 5}, "lease_seconds", None),
        ({"name": "P", "labels": ["a"], "embedding_dim": 0}, "embedding_dim", None),
        ({"name": "P", "labels": ["a"], "batch_size": "many"}, "batch_size", None),
        ({"name": "P", "labels": ["a"], "acquisition_strategy": "magic"}, "acquisition_strategy", None),
        ({"name": "P", "labels": ["a"], "task_type": "ner"}, "task_type", None),
    ],
)
def test_bad_create_requests_are_400_with_the_field(admin_api, payload, field, message):
    response = admin_api.post(PROJECTS, payload, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert field in body, body
    if message is not None:
        text = body[field] if isinstance(body[field], str) else " ".join(map(str, body[field]))
        assert message in text
    assert not Project.objects.exists()
    assert not LabelClass.objects.exists()


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{", "application/json"),
        (b"[" * 100_000, "application/json"),
        (b'{"name": "P", "labels": ["a"], "exploration_fraction": NaN}', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"null", "application/json"),
    ],
)
def test_malformed_create_bodies_are_400(admin_api, body, content_type):
    response = admin_api.post(PROJECTS, data=body, content_type=content_type)
    assert response.status_code == 400
    assert not Project.objects.exists()


def test_create_with_unsupported_content_type_is_415(admin_api):
    response = admin_api.post(PROJECTS, data=b"name=P", content_type="text/plain")
    assert response.status_code == 415


# --- who may create -------------------------------------------------------------------------


def test_staff_may_create(api_for, make_user):
    response = api_for(make_user("staffer", staff=True)).post(PROJECTS, {"name": "P", "labels": ["a"]}, format="json")
    assert response.status_code == 201


def test_superuser_may_create(api_for, make_user):
    response = api_for(make_user("root", superuser=True)).post(PROJECTS, {"name": "P", "labels": ["a"]}, format="json")
    assert response.status_code == 201


def test_user_with_add_project_permission_may_create(api_for, make_user):
    user = make_user("lead")
    user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotation"))
    response = api_for(user).post(PROJECTS, {"name": "P", "labels": ["a"]}, format="json")
    assert response.status_code == 201
    assert Membership.objects.get(project_id=response.json()["id"]).user == user


def test_plain_user_may_not_create(api_for, make_user):
    response = api_for(make_user("plain")).post(PROJECTS, {"name": "P", "labels": ["a"]}, format="json")
    assert response.status_code == 403
    assert "annotation.add_project" in response.json()["detail"]
    assert not Project.objects.exists()


# --- list and detail ------------------------------------------------------------------------


def test_list_shows_only_my_projects(api_for, admin_api, make_user, member, project, make_project):
    outsider = make_user("olga", staff=True)
    hidden = make_project("Hidden", user=outsider)
    bob = member("bob", Role.REVIEWER)

    rows = admin_api.get(PROJECTS).json()
    assert [(row["name"], row["my_role"]) for row in rows["results"]] == [("Support", "admin")]
    assert rows["count"] == 1

    rows = api_for(bob).get(PROJECTS).json()["results"]
    assert [(row["name"], row["my_role"]) for row in rows] == [("Support", "reviewer")]
    assert [label["name"] for label in rows[0]["labels"]] == ["refund", "card_lost", "other"]

    rows = api_for(outsider).get(PROJECTS).json()["results"]
    assert [row["id"] for row in rows] == [hidden.pk]

    assert api_for(make_user("nobody")).get(PROJECTS).json()["results"] == []


def test_superuser_sees_all_projects(api_for, make_user, project, make_project):
    other = make_project("Other", user=make_user("olga", staff=True))
    rows = api_for(make_user("root", superuser=True)).get(PROJECTS).json()["results"]
    assert [(row["id"], row["my_role"]) for row in rows] == [(project.pk, "admin"), (other.pk, "admin")]


def test_detail_has_item_counts_labels_and_my_role(api_for, admin_api, member, project):
    statuses = [ItemStatus.UNLABELED] * 3 + [ItemStatus.QUEUED, ItemStatus.FINALIZED, ItemStatus.FINALIZED]
    for n, status in enumerate(statuses):
        Item.objects.create(project=project, external_id=str(n), text="t", text_hash=text_digest("t"), status=status)

    body = admin_api.get(project_url(project)).json()
    assert body["item_counts"] == {
        "total": 6,
        "unlabeled": 3,
        "queued": 1,
        "in_progress": 0,
        "in_review": 0,
        "finalized": 2,
    }
    assert body["my_role"] == "admin"
    assert body["embedding_dim"] == 4
    assert [(label["name"], label["shortcut"]) for label in body["labels"]] == [
        ("refund", "1"),
        ("card_lost", "2"),
        ("other", "3"),
    ]

    for role in (Role.ANNOTATOR, Role.REVIEWER):
        body = api_for(member(f"m-{role}", role)).get(project_url(project)).json()
        assert body["my_role"] == role
        assert body["item_counts"]["total"] == 6


# --- change ---------------------------------------------------------------------------------


def test_admin_changes_settings(admin_api, project):
    response = admin_api.patch(
        project_url(project), {"batch_size": 10, "instructions": "Be careful.", "name": "Renamed"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["batch_size"], response.json()["name"]) == (10, "Renamed")
    project.refresh_from_db()
    assert (project.batch_size, project.instructions, project.name) == (10, "Be careful.", "Renamed")
    assert project.labels_per_item == 2  # untouched


def test_admin_adds_labels(admin_api, project):
    labels = ["refund", "card_lost", "other", {"name": "fraud", "description": "Someone else paid"}, "lost_pin"]
    response = admin_api.patch(project_url(project), {"labels": labels}, format="json")
    assert response.status_code == 200, response.json()
    assert labels_of(project) == [
        ("refund", "1", 0),
        ("card_lost", "2", 1),
        ("other", "3", 2),
        ("fraud", "4", 3),
        ("lost_pin", "5", 4),
    ]
    assert LabelClass.objects.get(project=project, name="fraud").description == "Someone else paid"
    assert [label["name"] for label in response.json()["labels"]][-2:] == ["fraud", "lost_pin"]


def test_admin_changes_shortcuts_and_descriptions(admin_api, project):
    labels = [
        {"name": "refund", "shortcut": "2"},
        {"name": "card_lost", "shortcut": "1"},
        {"name": "other", "description": "None of these"},
    ]
    response = admin_api.patch(project_url(project), {"labels": labels}, format="json")
    assert response.status_code == 200, response.json()
    assert labels_of(project) == [("refund", "2", 0), ("card_lost", "1", 1), ("other", "3", 2)]
    assert LabelClass.objects.get(project=project, name="other").description == "None of these"


def test_listing_labels_by_name_keeps_their_descriptions(admin_api, project):
    LabelClass.objects.filter(project=project, name="refund").update(description="Money back")
    response = admin_api.patch(project_url(project), {"labels": ["refund", "card_lost", "other", "new"]}, format="json")
    assert response.status_code == 200
    assert LabelClass.objects.get(project=project, name="refund").description == "Money back"
    labels = [{"name": "refund", "description": ""}, "card_lost", "other", "new"]
    assert admin_api.patch(project_url(project), {"labels": labels}, format="json").status_code == 200
    assert LabelClass.objects.get(project=project, name="refund").description == ""  # cleared when asked


@pytest.mark.parametrize(
    "labels, message",
    [
        (["refund", "card_lost"], "labels cannot be removed or renamed once a project exists; missing: ['other']"),
        (["refund", "card_lost", "misc"], "missing: ['other']"),
        (["refund", "card_lost", "other", "Refund"], "label 'Refund' repeats 'refund'"),
        (
            ["refund", "card_lost", "other", {"name": "new", "shortcut": "1"}],
            "shortcut '1' of 'new' is already used by 'refund'",
        ),
        (["refund", "card_lost", "other", {"name": "new", "shortcut": "s"}], "reserved"),
        ([{"name": "refund", "shortcut": "u"}, "card_lost", "other"], "reserved"),
        ([{"name": "refund", "shortcut": "2"}, "card_lost", "other"], "shortcut '2' is given to both"),
        # A changed label takes key 9 and a new one asks for it too.
        (
            [{"name": "refund", "shortcut": "9"}, "card_lost", "other", {"name": "new", "shortcut": "9"}],
            "shortcut '9' of 'new' is already used by 'refund'",
        ),
        # A new label may not take the key a changed label just left either (checked in one pass).
        (
            [{"name": "refund", "shortcut": "9"}, "card_lost", "other", {"name": "new", "shortcut": "3"}],
            "shortcut '3' of 'new' is already used by 'other'",
        ),
    ],
)
def test_bad_label_changes_are_400_and_change_nothing(admin_api, project, labels, message):
    before = labels_of(project)
    response = admin_api.patch(project_url(project), {"labels": labels, "batch_size": 7}, format="json")
    assert response.status_code == 400, response.content
    assert message in response.json()["labels"]
    assert labels_of(project) == before
    project.refresh_from_db()
    assert project.batch_size == 50  # the settings of a refused request are not applied either


def test_a_new_label_may_take_a_key_freed_in_the_same_request(admin_api, project):
    labels = [{"name": "refund", "shortcut": "9"}, "card_lost", "other", {"name": "new", "shortcut": "1"}]
    response = admin_api.patch(project_url(project), {"labels": labels}, format="json")
    assert response.status_code == 200, response.content
    assert labels_of(project) == [("refund", "9", 0), ("card_lost", "2", 1), ("other", "3", 2), ("new", "1", 3)]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"embedding_dim": 8}, "embedding_dim"),
        ({"encoder": "other/model"}, "encoder"),
        ({"labels_per_item": 4}, "labels_per_item"),
        ({"max_labels_per_item": 1}, "max_labels_per_item"),
        ({"exploration_fraction": 2}, "exploration_fraction"),
        ({"review_disagreements_below_kappa": 0.5}, "review_disagreements_below_kappa"),
        ({"lease_seconds": 1}, "lease_seconds"),
        ({"labels": []}, "labels"),
    ],
)
def test_bad_changes_are_400(admin_api, project, payload, field):
    response = admin_api.patch(project_url(project), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    fresh = Project.objects.get(pk=project.pk)
    assert (fresh.embedding_dim, fresh.encoder, fresh.labels_per_item, fresh.max_labels_per_item) == (
        4,
        project.encoder,
        2,
        3,
    )


def test_same_embedding_dim_is_not_a_change(admin_api, project):
    assert admin_api.patch(project_url(project), {"embedding_dim": 4}, format="json").status_code == 200


def test_cross_field_check_uses_the_stored_values(admin_api, project):
    assert admin_api.patch(project_url(project), {"max_labels_per_item": 5}, format="json").status_code == 200
    assert admin_api.patch(project_url(project), {"labels_per_item": 5}, format="json").status_code == 200
    assert admin_api.patch(project_url(project), {"labels_per_item": 6}, format="json").status_code == 400
    project.refresh_from_db()
    assert (project.labels_per_item, project.max_labels_per_item) == (5, 5)


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER])
def test_non_admins_may_not_change_or_delete(api_for, member, project, role):
    api = api_for(member("m", role))
    assert api.patch(project_url(project), {"batch_size": 1}, format="json").status_code == 403
    assert api.delete(project_url(project)).status_code == 403
    project.refresh_from_db()
    assert project.batch_size == 50


def test_admin_deletes(admin_api, project):
    response = admin_api.delete(project_url(project))
    assert response.status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not LabelClass.objects.exists() and not Membership.objects.exists()
    assert admin_api.get(project_url(project)).status_code == 404


def test_a_second_admin_may_change_the_project(api_for, member, project):
    api = api_for(member("carol", Role.ADMIN))
    assert api.patch(project_url(project), {"batch_size": 9}, format="json").status_code == 200


# --- visibility and authentication ----------------------------------------------------------


def test_non_member_gets_404_like_an_unknown_id(api_for, make_user, project):
    api = api_for(make_user("mallory", staff=True))
    for method, extra in (("get", {}), ("patch", {"data": {"batch_size": 1}, "format": "json"}), ("delete", {})):
        hidden = getattr(api, method)(project_url(project), **extra)
        unknown = getattr(api, method)(project_url(project.pk + 999), **extra)
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["detail"].replace(str(project.pk), "N") == unknown.json()["detail"].replace(
            str(project.pk + 999), "N"
        )
    assert api.get(f"{project_url(project)}/members").status_code == 404
    assert Project.objects.filter(pk=project.pk, batch_size=50).exists()


@pytest.mark.parametrize(
    "method, path, data",
    [
        ("get", "", None),
        ("post", "", {"name": "P", "labels": ["a"]}),
        ("get", "/{id}", None),
        ("patch", "/{id}", {"batch_size": 1}),
        ("delete", "/{id}", None),
        ("get", "/{id}/members", None),
        ("post", "/{id}/members", {"username": "x", "role": "admin"}),
        ("get", "/{id}/members/alice", None),
        ("get", "/{id}/items", None),
        ("get", "/{id}/ingests", None),
    ],
)
def test_anonymous_is_401_everywhere(api_for, project, method, path, data):
    api = api_for(None)
    url = PROJECTS + path.format(id=project.pk)
    kwargs = {"data": data, "format": "json"} if data is not None else {}
    response = getattr(api, method)(url, **kwargs)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert Project.objects.count() == 1


def test_token_authentication(admin_user, token_api, project):
    api = token_api(admin_user)
    assert [row["id"] for row in api.get(PROJECTS).json()["results"]] == [project.pk]
    response = api.post(PROJECTS, {"name": "By token", "labels": ["a"]}, format="json")
    assert response.status_code == 201
    response = api.post(
        f"{project_url(project)}/items", data='[{"external_id": "a", "text": "x"}]', content_type="application/json"
    )
    assert response.status_code == 201


def test_wrong_token_is_401(project):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert api.get(PROJECTS).status_code == 401


def test_session_authentication(admin_user, project):
    client = Client()
    client.force_login(admin_user)
    response = client.get(PROJECTS)
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [project.pk]


def test_session_writes_need_the_csrf_token(admin_user, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.patch(project_url(project), data='{"batch_size": 1}', content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    project.refresh_from_db()
    assert project.batch_size == 50


# --- schema, docs and pages -----------------------------------------------------------------


def test_openapi_schema(admin_api):
    response = admin_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Quorum API"
    assert "/api/v1/projects/{project_id}/items" in schema["paths"]
    assert "post" in schema["paths"]["/api/v1/projects/{project_id}/members"]


def test_docs_pages_render(admin_user):
    client = Client()
    client.force_login(admin_user)
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
    assert b"/api/v1/schema/" in docs.content
    assert client.get("/api/v1/redoc/").status_code == 200


def test_login_page_renders_and_logs_in(make_user):
    make_user("dora", password="a-long-password-1")
    client = Client()
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content and b'name="password"' in page.content
    response = client.post("/accounts/login/", {"username": "dora", "password": "a-long-password-1"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    bad = Client().post("/accounts/login/", {"username": "dora", "password": "wrong"})
    assert bad.status_code == 200 and b"didn't match" in bad.content


def test_home_redirects_anonymous_users_to_login(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/accounts/login/?next=/"


def test_home_lists_only_my_projects(make_user, member, project, make_project):
    make_project("Secret Project", user=make_user("olga", staff=True))
    bob = member("bob", Role.REVIEWER)
    Item.objects.create(project=project, external_id="1", text="t", text_hash=text_digest("t"))
    client = Client()
    client.force_login(bob)
    page = client.get("/")
    assert page.status_code == 200
    assert b"Support" in page.content
    assert b"reviewer" in page.content
    assert b"Secret Project" not in page.content

    client.force_login(make_user("newbie"))
    page = client.get("/")
    assert b"You are not a member of any project yet" in page.content
    assert b"Support" not in page.content
