"""The project dashboard: charts (pure SVG builders), the stopping signal, who sees the page, what it
shows, the settings form and the live jobs endpoint."""

import numpy as np
import pytest

from acquisition import curves
from acquisition.models import ModelVersion, ScoringRun, TrainingJob
from annotation import services
from annotation.models import AgreementSnapshot, IngestBatch, Project, Role
from annotation.services.aggregation import project_aggregate
from loop import charts

from .test_consensus import plant


def test_line_chart_draws_a_path_per_series_and_escapes_names():
    svg = charts.line_chart(
        [{"name": "<acc>", "points": [(50, 0.2), (100, 0.5)]}, {"name": "f1", "points": [(50, 0.1)]}],
        title="t & u",
        x_label="labels",
        y_label="score",
        y_range=(0, 1),
    )
    assert svg.startswith("<svg") and 'data-chart="line"' in svg
    assert svg.count("<path ") == 2 and svg.count("<circle ") == 3
    assert "&lt;acc&gt;" in svg and "<acc>" not in svg and "t &amp; u" in svg
    assert "no data yet" in charts.line_chart([], title="x", x_label="", y_label="")


def test_bar_chart_and_heatmap():
    bars = charts.bar_chart([("refund", 10), ("card_lost", 5), ("<b>", 0)], title="labels")
    assert bars.count("<rect ") == 3 and 'data-value="10"' in bars and "&lt;b&gt;" in bars
    heat = charts.heatmap(["ann1", "ann2"], [[1.0, 0.62], [0.62, None]], title="kappa")
    assert heat.count('class="cell"') == 4 and "0.62" in heat and "–" in heat


def test_stopping_signal():
    rising = [{"labels": n, "accuracy": 0.5 + n / 2000} for n in range(100, 1100, 100)]
    flat = rising + [{"labels": n, "accuracy": 1.0 + (n % 200) * 1e-6} for n in range(1100, 1700, 100)]
    go = curves.stopping_signal(rising)
    assert go["gain_per_100"] == pytest.approx(0.05) and not go["stop"]
    stop = curves.stopping_signal(flat)
    assert stop["stop"] and abs(stop["gain_per_100"]) < 0.005 and stop["from_labels"] == 1100
    assert curves.stopping_signal(rising[:2]) is None


@pytest.fixture
def busy_project(project, member):
    users = [member(f"ann{i}") for i in range(3)]
    plant(project, users, [0.9, 0.8, 0.6], 40)
    project_aggregate(project=project)
    for version, (n, acc) in enumerate([(40, 0.6), (80, 0.7), (120, 0.74)], start=1):
        ModelVersion.objects.create(
            project=project,
            version=version,
            status="current" if version == 3 else "retired",
            label_names=["refund", "card_lost", "other"],
            n_labels=n,
            metrics={"eval": {"accuracy": acc, "macro_f1": acc - 0.05, "ece": 0.1}},
            decision=f"promoted v{version}",
        )
    ScoringRun.objects.create(project=project, strategy="margin", status="running", n_chunks=4, chunks_done=1)
    IngestBatch.objects.create(
        project=project,
        format="json",
        status="processed",
        drift={
            "status": "done",
            "level": "warning",
            "psi_max": 0.17,
            "ks_max": 0.2,
            "n_new": 900,
            "n_reference": 40,
            "model_version": 3,
        },
    )
    return project


@pytest.mark.django_db
@pytest.mark.parametrize("role, status", [(Role.ANNOTATOR, 403), (Role.REVIEWER, 200), (None, 404)])
def test_who_sees_the_dashboard(project, make_user, client_for, role, status):
    user = make_user("someone")
    if role:
        services.membership_set(project=project, username="someone", role=role)
    assert client_for(user).get(f"/projects/{project.pk}/dashboard").status_code == status
    assert (
        client_for(user).get(f"/api/v1/projects/{project.pk}/jobs").status_code
        == {403: 403, 200: 200, 404: 404}[status]
    )


@pytest.mark.django_db
def test_dashboard_shows_the_loop(busy_project, admin_user, client_for):
    page = client_for(admin_user).get(f"/projects/{busy_project.pk}/dashboard").content.decode()
    assert 'data-chart="line"' in page and 'data-chart="heatmap"' in page and 'data-chart="bar"' in page
    snapshot = AgreementSnapshot.objects.filter(project=busy_project).latest("computed_at")
    assert f"{snapshot.project_kappa:.3f}" in page
    assert page.count('class="cell"') == 9  # 3 annotators
    assert 'data-testid="stopping"' in page
    assert "scoring run #" in page and "<progress" in page
    assert 'data-testid="drift"' in page and "warning: PSI 0.170" in page
    assert "ann0" in page and "Save settings" in page
    assert "format=csv" in page and "format=jsonl" in page


@pytest.mark.django_db
def test_reviewers_see_no_settings_form_and_cannot_post(busy_project, make_user, client_for):
    make_user("rev")
    services.membership_set(project=busy_project, username="rev", role=Role.REVIEWER)
    client = client_for(busy_project.memberships.get(user__username="rev").user)
    assert "Save settings" not in client.get(f"/projects/{busy_project.pk}/dashboard").content.decode()
    assert client.post(f"/projects/{busy_project.pk}/dashboard", {"batch_size": "10"}).status_code == 403


@pytest.mark.django_db
def test_settings_form_validates_and_saves(project, admin_user, client_for):
    client = client_for(admin_user)
    url = f"/projects/{project.pk}/dashboard"
    bad = client.post(
        url, {"batch_size": "0", "labels_per_item": "3", "max_labels_per_item": "2", "retrain_after": "50"}
    )
    page = bad.content.decode()
    assert bad.status_code == 400 and "Nothing was saved" in page
    assert 'id="error_batch_size"' in page and 'id="error_max_labels_per_item"' in page
    project.refresh_from_db()
    assert project.batch_size == 50 and project.retrain_after == 100  # nothing half-written
    good = client.post(url, {"batch_size": "20", "retrain_after": "40", "acquisition_strategy": "qbc"}, follow=True)
    assert good.status_code == 200 and "Settings saved" in good.content.decode()
    project = Project.objects.get(pk=project.pk)
    assert (project.batch_size, project.retrain_after, project.acquisition_strategy) == (20, 40, "qbc")


@pytest.mark.django_db
def test_jobs_endpoint_reports_progress(busy_project, admin_api):
    TrainingJob.objects.create(project=busy_project, trigger="manual", status="running", stage="evaluate")
    body = admin_api.get(f"/api/v1/projects/{busy_project.pk}/jobs").json()
    kinds = {job["kind"]: job for job in body["jobs"]}
    assert kinds["scoring"]["progress"] == pytest.approx(0.25)
    assert kinds["training"]["progress"] == pytest.approx(TrainingJob.STAGE_PROGRESS["evaluate"])
    assert "evaluating" in kinds["training"]["label"]
    assert np.isfinite([job["progress"] for job in body["jobs"]]).all()
