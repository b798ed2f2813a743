"""Browser page of the model side: the project's models and training jobs (reviewers read, admins act).

``/projects/{id}/models`` shows where the retrain trigger stands, the training jobs with their stage
and progress (the page refreshes itself while one runs), and every model version with its metrics,
the gate's comparison and decision. Admins get "Train now" and "Make current" (roll back) buttons,
plain POST forms that call the same services as the REST API.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from annotation import selectors as annotation_selectors
from annotation.models import Role
from quorum.errors import ServiceError
from quorum.web import reviewer_project_or_403

from . import selectors
from .models import ModelVersion, TrainingJob
from .services import loop
from .services.training import PROMOTABLE


def _admin_project_or_403(user, project_id: int):
    project, role = reviewer_project_or_403(user, project_id)
    if not annotation_selectors.has_role(role, Role.ADMIN):
        raise PermissionDenied("This needs the admin role in this project.")
    return project


def _version_row(version: ModelVersion) -> dict:
    metrics = version.metrics or {}
    gate = metrics.get("gate") or {}
    return {
        "version": version,
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
    versions = [_version_row(v) for v in selectors.model_versions_for_project(project)[:50]]
    return render(
        request,
        "acquisition/models.html",
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
    project = _admin_project_or_403(request.user, project_id)
    if not selectors.final_label_count(project):
        messages.error(request, "Nothing to train on yet: the project has no final labels.")
    elif loop.training_job_request(project=project, trigger="manual", user=request.user) is None:
        messages.warning(request, "A training job is already pending or running.")
    else:
        messages.success(request, "Training job requested.")
    return redirect("models", project_id=project.pk)


@login_required
@require_POST
def promote(request, project_id: int, version: int):
    project = _admin_project_or_403(request.user, project_id)
    try:
        promoted = loop.model_rollback(project=project, version_number=version, user=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"Model v{promoted.version} is current; the pool is being re-scored with it.")
    return redirect("models", project_id=project.pk)
