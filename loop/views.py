"""The loop's browser pages: the project dashboard and the models page (reviewers read, admins act).

``/projects/{id}/dashboard``: progress, label distribution, the learning curve with its stopping
signal, agreement (kappa heatmap, annotator table), the queue, drift, live jobs and model versions;
admins change the project's settings there (the same validation as ``PATCH /api/v1/projects/{id}``)
and reinstate annotators that quality control paused (``POST …/dashboard/members/{username}/reinstate``,
the same service as ``POST /api/v1/projects/{id}/members/{username}/reinstate``).

``/projects/{id}/models`` shows where the retrain trigger stands, the training jobs with their stage
and progress (the page refreshes itself while one runs), and every model version with its metrics,
the gate's comparison and decision. Admins get "Train now" and "Make current" (roll back) buttons,
plain POST forms that call the same services as the REST API.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from acquisition import curves, selectors
from acquisition.models import ModelVersion, TrainingJob
from acquisition.services.registry import PROMOTABLE
from annotation import selectors as annotation_selectors
from annotation.api.serializers import ProjectSerializer
from annotation.models import Project, Role
from annotation.services import membership_reinstate, project_update
from quorum.errors import ServiceError
from quorum.web import admin_project_or_403, reviewer_project_or_403

from . import charts, dashboard
from .services.training import manual_training_check, model_rollback, training_job_request


def _status_texts(versions: list[ModelVersion]) -> dict[int, str]:
    """What each version's status says. A retired version was replaced by whichever version became
    current next (promotions in time order): a newer one, or an older one after a roll back."""
    promoted = sorted((v for v in versions if v.promoted_at is not None), key=lambda v: (v.promoted_at, v.pk))
    texts = {}
    for version in versions:
        text = version.get_status_display()
        if version.status == ModelVersion.Status.RETIRED and version.promoted_at is not None:
            later = [v for v in promoted if (v.promoted_at, v.pk) > (version.promoted_at, version.pk)]
            if later:
                successor = later[0]
                text = (
                    f"Replaced by the newer v{successor.version}"
                    if successor.version > version.version
                    else f"Rolled back: replaced by the older v{successor.version}"
                )
            else:
                text = "Retired"
        texts[version.pk] = text
    return texts


def _version_row(version: ModelVersion, status_text: str | None = None) -> dict:
    metrics = version.metrics or {}
    gate = metrics.get("gate") or {}
    return {
        "version": version,
        "status_text": status_text or version.get_status_display(),
        "eval": metrics.get("eval") or {},
        "gate": gate if gate.get("n") else None,
        "sources": metrics.get("eval_sources") or {},
        "unbiased": metrics.get("eval_unbiased"),
        "can_promote": version.status in PROMOTABLE
        and version.status != ModelVersion.Status.CURRENT
        and bool(version.weights),
    }


@login_required
@require_safe
def models_page(request, project_id: int):
    project, role = reviewer_project_or_403(request.user, project_id)
    status = selectors.training_status(project)
    jobs = list(selectors.training_jobs_for_project(project)[:20])
    all_versions = list(selectors.model_versions_for_project(project))
    texts = _status_texts(all_versions)
    versions = [_version_row(v, texts[v.pk]) for v in all_versions[:50]]
    return render(
        request,
        "loop/models.html",
        {
            "project": project,
            "is_admin": annotation_selectors.has_role(role, Role.ADMIN),
            "status": status,
            "jobs": jobs,
            "versions": versions,
            "refresh": any(job.status in TrainingJob.ACTIVE for job in jobs),
            "final_labels": selectors.final_label_count(project),
        },
    )


@login_required
@require_POST
def train_now(request, project_id: int):
    project = admin_project_or_403(request.user, project_id)
    if not selectors.final_label_count(project):
        messages.error(request, "Nothing to train on yet: the project has no final labels.")
        return redirect("models", project_id=project.pk)
    try:
        manual_training_check(project=project)
    except ServiceError as exc:
        messages.warning(request, f"Not trained: {exc.detail}.")
        return redirect("models", project_id=project.pk)
    if training_job_request(project=project, trigger="manual", user=request.user) is None:
        messages.warning(request, "A training job is already pending or running.")
    else:
        messages.success(request, "Training job requested.")
    return redirect("models", project_id=project.pk)


@login_required
@require_POST
def promote(request, project_id: int, version: int):
    project = admin_project_or_403(request.user, project_id)
    try:
        promoted = model_rollback(project=project, version_number=version, user=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"Model v{promoted.version} is current; the pool is being re-scored with it.")
    return redirect("models", project_id=project.pk)


# --- the dashboard ---------------------------------------------------------------------------
SETTINGS_FORM = [
    # (field, input type, step) in display order; every one goes through ProjectSerializer's checks
    ("acquisition_strategy", "select", None),
    ("batch_size", "number", "1"),
    ("exploration_fraction", "number", "0.01"),
    ("labels_per_item", "number", "1"),
    ("max_labels_per_item", "number", "1"),
    ("review_all_below_kappa", "number", "0.01"),
    ("review_disagreements_below_kappa", "number", "0.01"),
    ("min_consensus_confidence", "number", "0.01"),
    ("retrain_after", "number", "1"),
    ("training_mode", "select", None),
    ("eval_fraction", "number", "0.01"),
    ("promotion_tolerance", "number", "0.005"),
    ("lease_seconds", "number", "1"),
    ("honeypot_rate", "number", "0.01"),
    ("onboarding_honeypots", "number", "1"),
    ("min_honeypot_accuracy", "number", "0.01"),
    ("min_honeypots", "number", "1"),
    ("paused_answers", "select", None),
    ("hidden_metadata", "text", None),
    ("instructions", "textarea", None),
]


def _settings_fields(project: Project, values: dict | None, errors: dict) -> list[dict]:
    fields = []
    for name, kind, step in SETTINGS_FORM:
        model_field = Project._meta.get_field(name)
        value = (values or {}).get(name, getattr(project, name))
        if isinstance(value, list):  # a list of names is edited as one comma-separated line
            value = ", ".join(value)
        fields.append(
            {
                "name": name,
                "label": name.replace("_", " ").capitalize(),
                "kind": kind,
                "step": step,
                "value": value,
                "choices": list(model_field.choices or []),
                "help": model_field.help_text,
                "error": " ".join(str(e) for e in errors.get(name, []))
                if isinstance(errors.get(name), list)
                else errors.get(name),
            }
        )
    return fields


def _dashboard_context(project: Project, role: str) -> dict:
    snapshot = dashboard.agreement(project)
    history = dashboard.model_history(project)
    curve = dashboard.learning_curve(history)
    kappa = (snapshot.kappa_matrix if snapshot else {}) or {}
    versions = list(selectors.model_versions_for_project(project)[:10])
    distribution = dashboard.label_distribution(project)
    multi = project.multi_label
    lines = [
        {"name": "subset accuracy" if multi else "accuracy", "points": [(p["labels"], p["accuracy"]) for p in curve]},
        {"name": "macro-F1", "points": [(p["labels"], p["macro_f1"]) for p in curve if p["macro_f1"] is not None]},
    ]
    if multi:
        lines.append(
            {"name": "micro-F1", "points": [(p["labels"], p["micro_f1"]) for p in curve if p["micro_f1"] is not None]}
        )
    return {
        "project": project,
        "role": role,
        "is_admin": annotation_selectors.has_role(role, Role.ADMIN),
        "progress": dashboard.progress(project),
        "labels_chart": charts.bar_chart(
            distribution, title="Decided items carrying each tag" if multi else "Final labels per class"
        ),
        "label_count": len(distribution),
        "curve_chart": charts.line_chart(
            lines,
            title=(
                "Held-out subset accuracy, micro- and macro-F1 of each model version against the labels it was trained on"
                if multi
                else "Held-out accuracy and macro-F1 of each model version against the labels it was trained on"
            ),
            x_label="final labels",
            y_label="held-out score",
            y_range=(0.0, 1.0),
        ),
        "curve": curve,
        "stopping": curves.stopping_rule(history),
        "snapshot": snapshot,
        "heatmap": charts.heatmap(
            kappa.get("annotators", []),
            kappa.get("values", []),
            title="Agreement on tag sets (kappa with the MASI distance) between pairs of annotators"
            if multi
            else "Cohen's kappa between pairs of annotators",
        ),
        "per_tag_kappa": dashboard.per_tag_kappa(project, snapshot),
        "annotators": dashboard.annotator_rows(project, snapshot),
        "queue": dashboard.queue_summary(project),
        "jobs": dashboard.active_jobs(project),
        "versions": versions,
        "drift": dashboard.latest_drift(project),
    }


@login_required
def project_dashboard(request, project_id: int):
    """Reviewers and admins see the dashboard; admins may change the project's settings (POST)."""
    project, role = reviewer_project_or_403(request.user, project_id)
    errors, posted = {}, None
    if request.method == "POST":
        if not annotation_selectors.has_role(role, Role.ADMIN):
            raise PermissionDenied("Changing settings needs the admin role in this project.")
        posted = {name: request.POST[name] for name, _, _ in SETTINGS_FORM if name in request.POST}
        serializer = ProjectSerializer(project, data=posted, partial=True)
        if serializer.is_valid():
            try:
                with transaction.atomic():
                    project_update(project=project, **serializer.validated_data)
            except ServiceError as exc:
                errors = exc.detail if isinstance(exc.detail, dict) else {"__all__": [str(exc.detail)]}
            else:
                messages.success(request, "Settings saved.")
                return redirect("dashboard", project_id=project.pk)
        else:
            errors = serializer.errors
    elif request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    context = _dashboard_context(project, role)
    context["settings_fields"] = _settings_fields(project, posted, errors)
    context["settings_errors"] = errors
    context["config"] = {"projectId": project.pk, "apiRoot": reverse("api-projects").removesuffix("projects")}
    return render(request, "loop/dashboard.html", context, status=400 if errors else 200)


@login_required
@require_POST
def member_reinstate(request, project_id: int, username: str):
    """Admins lift the pause of an annotator (quality control); from now on only their new
    honeypot answers count towards the minimum accuracy."""
    project = admin_project_or_403(request.user, project_id)
    try:
        membership = membership_reinstate(project=project, username=username)
    except ServiceError as exc:
        messages.error(
            request, str(exc.detail.get("username", exc.detail) if isinstance(exc.detail, dict) else exc.detail)
        )
    else:
        messages.success(request, f"{membership.user.username} is reinstated and can label again.")
    return redirect("dashboard", project_id=project.pk)
