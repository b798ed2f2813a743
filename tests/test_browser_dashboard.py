"""The dashboard in headless Chromium: an admin opens it, the charts are drawn (learning curve, kappa
heatmap, label bars), the live job list is polled without errors, and screenshots are saved."""

import pytest

from acquisition.models import ScoringRun
from annotation import services
from annotation.models import Project, Role

from .browser import PASSWORD, log_in
from .test_dashboard import busy_project  # noqa: F401 (fixture)

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_with_password(admin_user):
    admin_user.set_password(PASSWORD)
    admin_user.save()
    return admin_user


def test_admin_sees_the_charts_and_live_jobs(open_page, busy_project, admin_with_password, artifacts_dir):  # noqa: F811
    page = open_page()
    log_in(page, admin_with_password.username, PASSWORD, f"/projects/{busy_project.pk}/dashboard")
    page.wait_for_selector('svg[data-chart="line"] path[data-series="accuracy"]')
    assert page.locator('svg[data-chart="line"] circle').count() >= 6  # 3 versions × 2 series
    assert page.locator('svg[data-chart="heatmap"] g.cell').count() == 9
    assert page.locator('svg[data-chart="bar"] rect').count() == 3
    box = page.locator('svg[data-chart="line"]').bounding_box()
    assert box["width"] > 300 and box["height"] > 100  # drawn, not collapsed
    assert "scoring run #" in page.locator("#jobs").inner_text()
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)

    # the run finishes: the next poll redraws the list and reloads the page with fresh figures
    ScoringRun.objects.filter(project=busy_project).update(status="succeeded")
    page.wait_for_function("() => !document.getElementById('jobs').innerText.includes('scoring run')", timeout=10_000)
    assert "embedding" in page.locator("#jobs").inner_text()  # the planted items still wait for vectors
    assert page.errors == []


def test_settings_form_in_the_browser(open_page, busy_project, admin_with_password, artifacts_dir):  # noqa: F811
    page = open_page()
    log_in(page, admin_with_password.username, PASSWORD, f"/projects/{busy_project.pk}/dashboard")
    page.fill("#id_batch_size", "0")
    with page.expect_navigation():
        page.click("text=Save settings")
    assert page.locator("#error_batch_size").is_visible()
    page.screenshot(path=str(artifacts_dir / "dashboard-settings-error.png"))
    page.fill("#id_batch_size", "25")
    with page.expect_navigation():
        page.click("text=Save settings")
    assert "Settings saved" in page.content()
    assert Project.objects.get(pk=busy_project.pk).batch_size == 25
    # the refused form answered 400 (that is the one console line); no script failed
    assert [e for e in page.errors if "status of 400" not in e] == []


def test_annotators_are_turned_away(open_page, project, make_user):
    user = make_user("ann-only")
    services.membership_set(project=project, username="ann-only", role=Role.ANNOTATOR)
    page = open_page()
    log_in(page, user.username, PASSWORD, "/")
    response = page.goto(f"/projects/{project.pk}/dashboard")
    assert response.status == 403
