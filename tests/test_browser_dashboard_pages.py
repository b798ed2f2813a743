"""Dashboard and models page in headless Chromium: a finished job never reloads the page over
unsaved settings, the label chart lists every label with its full name, the kappa heatmap keeps
full annotator names, a roll back reads right on the models page, and neither page is wider than
a 390 px phone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acquisition.models import ModelVersion, ScoringRun
from annotation import services
from annotation.models import AgreementSnapshot
from annotation.services.projects import LabelSpec
from loop.services.training import model_rollback

from .browser import PASSWORD, PHONE, log_in
from .test_dashboard import busy_project  # noqa: F401 (fixture)

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)

CATEGORIES = json.loads(
    (Path(services.__file__).resolve().parents[1] / "demo" / "banking77_categories.json").read_text()
)
WIDTH = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"


@pytest.fixture
def admin_with_password(admin_user):
    admin_user.set_password(PASSWORD)
    admin_user.save()
    return admin_user


def test_a_finished_job_keeps_unsaved_settings(open_page, busy_project, admin_with_password):  # noqa: F811
    page = open_page()
    log_in(page, admin_with_password.username, PASSWORD, f"/projects/{busy_project.pk}/dashboard")
    assert "scoring run #" in page.locator("#jobs").inner_text()
    page.evaluate("window.__notReloaded = true")
    page.fill("#id_batch_size", "33")
    ScoringRun.objects.filter(project=busy_project).update(status="succeeded")
    page.locator("#stale-note").wait_for(state="visible")
    assert page.evaluate("window.__notReloaded") is True
    assert page.input_value("#id_batch_size") == "33"
    with page.expect_navigation():
        page.click('[data-action="refresh"]')
    assert page.errors == []


def test_every_label_and_full_annotator_names(open_page, busy_project, admin_with_password):  # noqa: F811
    labels = ["refund", "card_lost", "other", *CATEGORIES]
    services.project_update(project=busy_project, labels=[LabelSpec(name) for name in labels])
    long_names = ["annotator_with_a_rather_long_name_1", "annotator_with_a_rather_long_name_2"]
    snapshot = AgreementSnapshot.objects.filter(project=busy_project).order_by("-computed_at", "-id").first()
    snapshot.kappa_matrix = {"annotators": long_names, "values": [[1.0, 0.5], [0.5, 1.0]]}
    snapshot.save(update_fields=["kappa_matrix"])
    page = open_page()
    log_in(page, admin_with_password.username, PASSWORD, f"/projects/{busy_project.pk}/dashboard")
    bars = page.locator('svg[data-chart="bar"] g.bar')
    expected = ["refund", "card_lost", "other", *CATEGORIES]
    assert bars.count() == 80
    titles = page.eval_on_selector_all(
        'svg[data-chart="bar"] g.bar > title', "nodes => nodes.map(n => n.textContent.split(':')[0])"
    )
    assert titles == expected
    shown = page.eval_on_selector_all(
        'svg[data-chart="bar"] g.bar > text:first-of-type', "ns => ns.map(n => n.textContent)"
    )
    assert shown == expected  # no name cut
    assert "All 80 labels" in page.locator('[data-testid="labels-note"]').inner_text()
    names = page.eval_on_selector_all(
        'svg[data-chart="heatmap"] text[data-name] > title', "ns => ns.map(n => n.textContent)"
    )
    assert names == long_names
    assert page.errors == []


def test_roll_back_statuses_and_decisions(open_page, busy_project, admin_with_password):  # noqa: F811
    v1 = ModelVersion.objects.get(project=busy_project, version=1)
    original = "promoted: first model"
    ModelVersion.objects.filter(pk=v1.pk).update(decision=original, weights="x", promoted_at="2024-01-01T00:00Z")
    ModelVersion.objects.filter(project=busy_project, version=2).update(promoted_at="2024-01-02T00:00Z", weights="x")
    ModelVersion.objects.filter(project=busy_project, version=3).update(promoted_at="2024-01-03T00:00Z", weights="x")
    model_rollback(project=busy_project, version_number=1, user=admin_with_password)
    page = open_page()
    log_in(page, admin_with_password.username, PASSWORD, f"/projects/{busy_project.pk}/models")
    status = {
        row.locator("td").first.inner_text().split("\n")[0]: row.locator('[data-testid="version-status"]').inner_text()
        for row in page.locator("tr[class^='version-']").all()
    }
    assert status == {
        "v3": "Rolled back: replaced by the older v1",
        "v2": "Replaced by the newer v3",
        "v1": "Current",
    }
    decision = ModelVersion.objects.get(pk=v1.pk).decision
    assert decision.startswith(original) and "replacing v3" in decision
    assert page.errors == []


@pytest.mark.parametrize("path", ["dashboard", "models", "members"])
def test_no_horizontal_overflow_on_a_phone(open_page, busy_project, admin_with_password, path, artifacts_dir):  # noqa: F811
    page = open_page(PHONE)
    log_in(page, admin_with_password.username, PASSWORD, f"/projects/{busy_project.pk}/{path}")
    page.screenshot(path=str(artifacts_dir / f"{path}-phone.png"), full_page=True)
    wide = page.evaluate(
        """() => Array.from(document.querySelectorAll('body *')).filter(e => (e.scrollWidth > 391 || e.getBoundingClientRect().right > 391) && !(e.parentElement && e.parentElement.closest('.table-wrap, .scroll-x')))
            .map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 12)"""
    )
    assert page.evaluate(WIDTH) <= PHONE["width"], wide
    assert page.errors == []
    if path == "models":  # every version's actions are on screen, not in a column scrolled out of view
        actions = page.locator('[data-testid="version-actions"]').first
        box = actions.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
