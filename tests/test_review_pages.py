"""The review page through Django's test client: who may open it, what it renders, CSRF, and the
link to it from "My projects"."""

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from annotation import services
from annotation.ingest_records import text_digest
from annotation.models import Item, ItemStatus, Role
from annotation.services.projects import LabelSpec

pytestmark = pytest.mark.django_db


def review_url(project) -> str:
    return reverse("review", args=[project.pk])


@pytest.fixture
def reviewer(member):
    return member("rita", Role.REVIEWER)


def config_of(response) -> dict:
    match = re.search(r'<script id="reviewer-config" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "the review page embeds its configuration"
    return json.loads(match.group(1))


# --- who may open it -----------------------------------------------------------------------


def test_review_page_needs_login(client, project):
    url = review_url(project)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ADMIN])
def test_reviewers_and_admins_get_the_page(client_for, member, project, role):
    response = client_for(member(f"user-{role}", role)).get(review_url(project))
    assert response.status_code == 200
    assert project.name in response.content.decode()


def test_project_creator_and_superuser_get_the_page(client_for, admin_user, make_user, project):
    assert client_for(admin_user).get(review_url(project)).status_code == 200  # the creator is its admin
    assert client_for(make_user("root", superuser=True)).get(review_url(project)).status_code == 200


def test_annotators_are_refused(client_for, member, project):
    """Annotators are members, so the project is no secret to them: 403, as the API answers."""
    response = client_for(member("ann", Role.ANNOTATOR)).get(review_url(project))
    assert response.status_code == 403
    assert "review.js" not in response.content.decode()


def test_non_members_and_unknown_projects_get_404(client_for, make_user, project, make_project):
    outsider = make_user("eve")
    assert client_for(outsider).get(review_url(project)).status_code == 404
    assert client_for(outsider).get(reverse("review", args=[project.pk + 999])).status_code == 404
    # A reviewer of one project is a stranger to another.
    other = make_project("Other team")
    services.membership_set(project=project, username="eve", role=Role.REVIEWER)
    assert client_for(outsider).get(review_url(project)).status_code == 200
    assert client_for(outsider).get(review_url(other)).status_code == 404


def test_review_page_is_read_only(client_for, reviewer, project):
    """The page itself only renders; decisions go through the API."""
    assert client_for(reviewer).post(review_url(project)).status_code == 405
    assert client_for(reviewer, enforce_csrf_checks=True).post(review_url(project)).status_code == 403
    assert client_for(reviewer).head(review_url(project)).status_code == 200


# --- what it renders --------------------------------------------------------------------------


def test_page_renders_labels_shortcuts_note_and_live_region(client_for, reviewer, project):
    project.instructions = "Decide by the customer's main ask."
    project.save()
    response = client_for(reviewer).get(review_url(project))
    html = response.content.decode()
    labels = list(project.labels.order_by("order"))
    for label in labels:
        button = re.search(rf'<button[^>]*data-label="{label.name}"[^>]*>(.*?)</button>', html, re.S)
        assert button, label.name
        assert f'data-key="{label.shortcut}"' in button.group(0)
        assert f'aria-keyshortcuts="{label.shortcut}"' in button.group(0)
        assert 'aria-pressed="false"' in button.group(0)
        assert f'<kbd aria-hidden="true">{label.shortcut}</kbd>' in button.group(1)
    note = re.search(r"<textarea[^>]*>", html).group(0)
    assert 'id="review-note"' in note and 'aria-keyshortcuts="N"' in note
    assert '<label for="review-note"' in html
    assert 'data-action="confirm"' in html and 'aria-keyshortcuts="Enter Control+Enter"' in html
    assert 'aria-live="polite"' in html and 'role="alert"' in html
    assert "No disagreements waiting" in html  # the empty state, hidden until needed
    assert 'data-progress="open"' in html
    assert "Project agreement" in html
    assert "<p>Decide by the customer&#x27;s main ask.</p>" in html
    assert '<script src="/static/js/review.js" defer></script>' in html


def test_page_hands_its_script_the_api_root_csrf_token_and_policy(client_for, reviewer, project):
    client = client_for(reviewer, enforce_csrf_checks=True)
    response = client.get(review_url(project))
    config = config_of(response)
    assert config["csrfToken"] and response.cookies["csrftoken"].value
    assert config["apiRoot"] == "/api/v1/"
    assert config["projectId"] == project.pk
    assert config["loginUrl"] == f"{reverse('login')}?next={review_url(project)}"
    assert config["labels"] == [{"name": lb.name, "shortcut": lb.shortcut} for lb in project.labels.order_by("order")]
    assert config["noteKey"] == "n"
    assert config["maxLabels"] == project.max_labels_per_item
    assert config["thresholds"] == {
        "reviewAllBelowKappa": project.review_all_below_kappa,
        "reviewDisagreementsBelowKappa": project.review_disagreements_below_kappa,
        "minConsensusConfidence": project.min_consensus_confidence,
    }


def test_a_label_on_n_moves_the_note_to_shift_n(client_for, make_user):
    user = make_user("boss")
    project = services.project_create(
        user=user,
        name="Yes/no",
        labels=[LabelSpec("yes", shortcut="y"), LabelSpec("no", shortcut="n")],
        embedding_dim=4,
    )
    response = client_for(user).get(review_url(project))
    html = response.content.decode()
    assert config_of(response)["noteKey"] == "N"
    assert re.search(r'data-label="no" data-key="n"', html)
    assert 'aria-keyshortcuts="Shift+N"' in re.search(r"<textarea[^>]*>", html).group(0)
    assert "<kbd>Shift</kbd>+<kbd>n</kbd>" in html


def test_many_labels_get_a_filter(client_for, make_user, make_project):
    user = make_user("lots")
    project = make_project("Many", user=user, labels=[f"intent_{i:02d}" for i in range(40)])
    html = client_for(user).get(review_url(project)).content.decode()
    assert 'id="label-filter"' in html
    assert html.count('class="label-btn"') == 40


def test_user_text_is_escaped(client_for, hostile_project):
    user, project = hostile_project
    response = client_for(user).get(review_url(project))
    html = response.content.decode()
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert "<b>bold</b>" not in html
    assert "<script>alert(1)</script>" not in html
    assert config_of(response)["labels"][0]["name"].startswith('say "hi"')


def test_assets_are_local(client_for, reviewer, project):
    html = client_for(reviewer).get(review_url(project)).content.decode()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs
    for ref in refs:
        assert not re.match(r"^(?:[a-z]+:)?//", ref), f"the review page loads {ref} from elsewhere"
    for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        assert finders.find(asset), asset


# --- "My projects" -----------------------------------------------------------------------------


def test_home_links_reviewers_to_the_review_page_with_the_open_count(client_for, reviewer, member, project):
    Item.objects.bulk_create(
        Item(project=project, external_id=f"t{i}", text=f"text {i}", text_hash=text_digest(f"text {i}"), status=status)
        for i, status in enumerate([ItemStatus.IN_REVIEW, ItemStatus.IN_REVIEW, ItemStatus.QUEUED])
    )
    html = client_for(reviewer).get(reverse("home")).content.decode()
    link = re.search(rf'<a[^>]*href="{review_url(project)}"[^>]*>(.*?)</a>', html, re.S)
    assert link, "reviewers see a link to the review page"
    assert f'aria-label="Review {project.name}: 2 open tasks"' in link.group(0)
    assert '<span class="review-count">2</span>' in link.group(1)

    annotator_html = client_for(member("ann", Role.ANNOTATOR)).get(reverse("home")).content.decode()
    assert review_url(project) not in annotator_html


# --- CSRF on the API the page drives -------------------------------------------------------------


def test_the_page_token_unlocks_the_review_api(client_for, reviewer, project):
    """The page's script calls the API with the session cookie: CSRF applies there too."""
    client = client_for(reviewer, enforce_csrf_checks=True)
    config = config_of(client.get(review_url(project)))
    url = f"{config['apiRoot']}projects/{project.pk}/reviews/next"

    refused = client.post(url, "{}", content_type="application/json")
    assert refused.status_code == 403

    accepted = client.post(url, "{}", content_type="application/json", headers={"X-CSRFToken": config["csrfToken"]})
    assert accepted.status_code == 200, accepted.content
    assert accepted.json() == {"review": None, "open": 0}
