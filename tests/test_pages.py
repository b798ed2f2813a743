"""Browser pages through Django's test client: login, my projects, the labelling page."""

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.ingest_records import text_digest
from annotation.models import Annotation, Assignment, AssignmentStatus, Item, ItemStatus, QueueEntry, Role
from annotation.services.projects import LabelSpec

pytestmark = pytest.mark.django_db

PASSWORD = "pw-12345-quorum"


def label_url(project):
    return reverse("label", args=[project.pk])


@pytest.fixture
def annotator(member):
    return member("ann", Role.ANNOTATOR)


def config_of(response) -> dict:
    match = re.search(r'<script id="labeller-config" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "the labelling page embeds its configuration"
    return json.loads(match.group(1))


# --- login required ------------------------------------------------------------------------


@pytest.mark.parametrize("name,args", [("home", []), ("label", [1])])
def test_pages_need_login(client, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_login_page_renders_a_form_with_csrf(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'autocomplete="username"' in html and 'autocomplete="current-password"' in html


def test_wrong_password_says_so(client, annotator):
    response = client.post(reverse("login"), {"username": "ann", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert "_auth_user_id" not in client.session


# --- CSRF ----------------------------------------------------------------------------------


def test_login_form_enforces_csrf(annotator):
    client = Client(enforce_csrf_checks=True)
    refused = client.post(reverse("login"), {"username": "ann", "password": PASSWORD})
    assert refused.status_code == 403
    assert "_auth_user_id" not in client.session

    page = client.get(reverse("login"))
    token = page.context["csrf_token"]
    accepted = client.post(
        reverse("login"), {"username": "ann", "password": PASSWORD, "csrfmiddlewaretoken": str(token)}
    )
    assert accepted.status_code == 302
    assert accepted["Location"] == reverse("home")
    assert client.session["_auth_user_id"] == str(annotator.pk)


def test_logout_form_enforces_csrf(client_for, annotator):
    client = client_for(annotator, enforce_csrf_checks=True)
    assert client.post(reverse("logout")).status_code == 403
    assert client.session.get("_auth_user_id") == str(annotator.pk)

    home = client.get(reverse("home"))
    html = home.content.decode()
    assert f'action="{reverse("logout")}"' in html
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(reverse("logout"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_labelling_page_hands_its_script_a_csrf_token(client_for, annotator, project):
    client = client_for(annotator, enforce_csrf_checks=True)
    response = client.get(label_url(project))
    config = config_of(response)
    assert config["csrfToken"]
    assert response.cookies["csrftoken"].value
    assert config["apiRoot"] == "/api/v1/"
    assert config["projectId"] == project.pk
    assert config["loginUrl"] == f"{reverse('login')}?next={label_url(project)}"


# --- my projects ---------------------------------------------------------------------------


def test_home_lists_only_my_projects_with_links(client_for, annotator, project, make_project):
    other = make_project("Hidden elsewhere")
    response = client_for(annotator).get(reverse("home"))
    html = response.content.decode()
    assert response.status_code == 200
    assert project.name in html and f'href="{label_url(project)}"' in html
    assert other.name not in html and label_url(other) not in html


def test_home_without_projects(client_for, make_user):
    response = client_for(make_user("loner")).get(reverse("home"))
    assert "not a member of any project" in response.content.decode()


def _items(project, n, prefix="t"):
    return Item.objects.bulk_create(
        Item(project=project, external_id=f"{prefix}{i}", text=f"text {i}", text_hash=text_digest(f"text {i}"))
        for i in range(n)
    )


def test_home_progress_counts(client_for, annotator, project, make_user):
    items = _items(project, 6)
    Item.objects.filter(pk=items[5].pk).update(status=ItemStatus.FINALIZED)
    label = project.labels.first()
    for item in items[:4]:
        QueueEntry.objects.create(project=project, item=item, priority=1.0, labels_needed=2)
    # Annotator labelled item 0; someone else holds item 1 and took the last slot of item 2.
    other = make_user("bob")
    now = timezone.now()
    mine = Assignment.objects.create(
        project=project, item=items[0], user=annotator, status=AssignmentStatus.SUBMITTED, leased_at=now, expires_at=now
    )
    Annotation.objects.create(project=project, item=items[0], user=annotator, assignment=mine, label=label)
    QueueEntry.objects.filter(item=items[0]).update(labels_taken=1)
    QueueEntry.objects.filter(item=items[2]).update(labels_taken=2)
    Assignment.objects.create(project=project, item=items[1], user=other, leased_at=now, expires_at=now)

    response = client_for(annotator).get(reverse("home"))
    row = response.context["rows"][0]
    assert row["done_total"] == 1 and row["done_today"] == 1
    # Open slots not yet handed to me: item 1 (one slot left) and item 3; not item 0 (mine), not item 2 (full).
    assert row["remaining"] == 2
    assert row["items_total"] == 6 and row["finalized"] == 1


def test_home_queries_do_not_grow_with_projects(client_for, make_user, make_project, django_assert_max_num_queries):
    user = make_user("busy")
    for i in range(6):
        project = make_project(f"P{i}", user=user)
        _items(project, 3, prefix=f"p{i}-")
    client = client_for(user)
    with django_assert_max_num_queries(8):  # session + user + the five reads of the page
        response = client.get(reverse("home"))
    assert len(response.context["rows"]) == 6


# --- the labelling page ----------------------------------------------------------------------


def test_labelling_page_renders_labels_shortcuts_and_instructions(client_for, annotator, project):
    project.instructions = "Pick the intent.\n\nSkip anything that is not English."
    project.save()
    response = client_for(annotator).get(label_url(project))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<details class="instructions"' in html and "<summary>Instructions</summary>" in html
    assert "<p>Pick the intent.</p>" in html and "not English" in html
    labels = list(project.labels.order_by("order"))
    assert [label.shortcut for label in labels] == ["1", "2", "3"]
    for label in labels:
        button = re.search(rf'<button[^>]*data-label="{label.name}"[^>]*>(.*?)</button>', html, re.S)
        assert button, label.name
        assert f'data-key="{label.shortcut}"' in button.group(0)
        assert f'aria-keyshortcuts="{label.shortcut}"' in button.group(0)
        assert f'<kbd aria-hidden="true">{label.shortcut}</kbd>' in button.group(1)
    assert 'data-action="skip"' in html and 'data-action="undo"' in html
    assert 'id="suggest-toggle"' in html and "checked" not in re.search(
        r'<input[^>]*id="suggest-toggle"[^>]*>', html
    ).group(0)
    assert 'aria-live="polite"' in html
    assert "No items to label right now" in html  # the empty-queue state, hidden until needed
    assert config_of(response)["labels"] == [{"name": lb.name, "shortcut": lb.shortcut} for lb in labels]


def test_labelling_page_without_instructions_has_no_empty_box(client_for, annotator, project):
    html = client_for(annotator).get(label_url(project)).content.decode()
    assert "<details" not in html


def test_labels_with_letters_and_no_shortcut(client_for, make_user, make_project):
    user = make_user("lots")
    names = [f"intent_{i:02d}" for i in range(40)]
    project = make_project("Many", user=user, labels=names)
    html = client_for(user).get(label_url(project)).content.decode()
    keys = re.findall(r'data-key="(.)"', html)
    assert len(keys) == 34 and "s" not in keys and "u" not in keys  # 1-9, 0, a-z less s and u
    assert keys[:11] == list("1234567890a")
    assert html.count('class="label-btn"') == 40
    assert 'id="label-filter"' in html  # many labels: a filter box


def test_user_text_is_escaped(client_for, hostile_project):
    user, project = hostile_project
    html = client_for(user).get(label_url(project)).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert "<b>bold</b>" not in html
    assert "<script>alert(1)</script>" not in html
    assert config_of(client_for(user).get(label_url(project)))["labels"][0]["name"].startswith('say "hi"')


def test_non_members_get_404(client_for, make_user, project):
    outsider = make_user("eve")
    assert client_for(outsider).get(label_url(project)).status_code == 404
    assert client_for(outsider).get(reverse("label", args=[project.pk + 999])).status_code == 404


def test_members_see_only_their_projects(client_for, annotator, project, make_project):
    other = make_project("Other team")
    client = client_for(annotator)
    assert client.get(label_url(project)).status_code == 200
    assert client.get(label_url(other)).status_code == 404


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN])
def test_every_role_may_label(client_for, member, project, role):
    user = member(f"user-{role}", role)
    assert client_for(user).get(label_url(project)).status_code == 200


def test_superuser_may_open_any_project(client_for, make_user, project):
    root = make_user("root", superuser=True)
    assert client_for(root).get(label_url(project)).status_code == 200


# --- assets ----------------------------------------------------------------------------------


def test_assets_are_local(client_for, annotator, project):
    for url in (reverse("home"), label_url(project), reverse("login")):
        client = client_for(annotator if url != reverse("login") else None)
        html = client.get(url).content.decode()
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs
        for ref in refs:
            assert not re.match(r"^(?:[a-z]+:)?//", ref), f"{url} loads {ref} from elsewhere"
        for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
            assert finders.find(asset), asset
    assert "/static/js/label.js" in client_for(annotator).get(label_url(project)).content.decode()


def test_explicit_shortcuts_show_on_the_buttons(make_user):
    user = make_user("explicit")
    project = services.project_create(
        user=user, name="Keys", labels=[LabelSpec("yes", shortcut="y"), LabelSpec("no", shortcut="n")], embedding_dim=4
    )
    client = Client()
    client.force_login(user)
    html = client.get(label_url(project)).content.decode()
    assert re.search(r'data-label="yes" data-key="y"', html) and re.search(r'data-label="no" data-key="n"', html)


def test_the_page_token_unlocks_the_api_and_nothing_else_does(client_for, annotator, project):
    """The labelling page's script calls the API with the session cookie: CSRF applies there too."""
    _items(project, 2)
    client = client_for(annotator, enforce_csrf_checks=True)
    token = config_of(client.get(label_url(project)))["csrfToken"]
    url = f"{config_of(client.get(label_url(project)))['apiRoot']}projects/{project.pk}/next"
    body = json.dumps({"held": [], "suggest": False})

    refused = client.post(url, body, content_type="application/json")
    assert refused.status_code == 403
    assert not Assignment.objects.filter(user=annotator).exists()

    accepted = client.post(url, body, content_type="application/json", headers={"X-CSRFToken": token})
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["assignment"]["item"]["external_id"] == "t0"
