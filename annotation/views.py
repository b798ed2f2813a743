"""Browser pages of the annotation app: my projects, the labelling page and the review page.

Both working pages are thin shells: they render the project, its instructions and label buttons,
and a small script drives the REST API so that items follow each other without a page reload
(labelling: ``/api/v1/projects/{id}/next``, submit, skip, undo; review: ``reviews/next``,
``reviews/{id}/resolve``, ``agreement``).
"""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from quorum.web import member_project_or_404, reviewer_project_or_403

from . import selectors
from .models import Annotation, Item, ItemStatus, Project, QueueEntry, Role

# --- page reads ----------------------------------------------------------------------------


def _start_of_today():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def home_rows(user) -> list[dict]:
    """My projects with my role, my progress and the project's totals, in five queries whatever
    the number of projects: projects, roles, item counts by status, my annotations, open slots."""
    projects = list(
        selectors.projects_for_user(user).annotate(n_labels=Count("labels", distinct=True)).order_by("name", "id")
    )
    if not projects:
        return []
    ids = [project.pk for project in projects]
    roles = selectors.roles_by_project(user, projects)

    items: dict[int, dict[str, int]] = defaultdict(dict)
    for row in (
        Item.objects.filter(project_id__in=ids).order_by().values("project_id", "status").annotate(n=Count("id"))
    ):
        items[row["project_id"]][row["status"]] = row["n"]

    mine = {
        row["project_id"]: row
        for row in Annotation.objects.filter(user=user, project_id__in=ids)
        .order_by()
        .values("project_id")
        .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=_start_of_today())))
    }
    # Queue entries with a free slot that this user has never been handed.
    open_for_me = dict(
        QueueEntry.objects.filter(project_id__in=ids, labels_taken__lt=F("labels_needed"))
        .exclude(item__assignments__user=user)
        .order_by()
        .values("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )

    rows = []
    for project in projects:
        by_status = items[project.pk]
        total = sum(by_status.values())
        finalized = by_status.get(ItemStatus.FINALIZED, 0)
        rows.append(
            {
                "project": project,
                "role": roles.get(project.pk),
                "done_total": mine.get(project.pk, {}).get("total", 0),
                "done_today": mine.get(project.pk, {}).get("today", 0),
                "remaining": open_for_me.get(project.pk, 0),
                "items_total": total,
                "finalized": finalized,
                "finalized_percent": round(100 * finalized / total) if total else 0,
                "can_review": selectors.has_role(roles.get(project.pk), Role.REVIEWER),
                "open_reviews": by_status.get(ItemStatus.IN_REVIEW, 0),
            }
        )
    return rows


def _label_buttons(project: Project) -> list:
    labels = list(project.labels.order_by("order", "id"))
    for label_class in labels:
        # Break points after underscores, so that long snake_case names wrap between words.
        label_class.name_parts = label_class.name.split("_")
    return labels


def _page_config(request, project: Project, labels: list) -> dict:
    return {
        "projectId": project.pk,
        "apiRoot": reverse("api-projects").removesuffix("projects"),
        "csrfToken": get_token(request),
        "loginUrl": f"{reverse('login')}?next={request.path}",
        "labels": [{"name": label_class.name, "shortcut": label_class.shortcut} for label_class in labels],
    }


# --- pages ---------------------------------------------------------------------------------


@login_required
def home(request):
    return render(request, "annotation/home.html", {"rows": home_rows(request.user)})


@login_required
def label(request, project_id: int):
    project, _role = member_project_or_404(request.user, project_id)
    labels = _label_buttons(project)
    return render(
        request,
        "annotation/label.html",
        {
            "project": project,
            "labels": labels,
            "config": _page_config(request, project, labels),
            "many_labels": len(labels) > 12,
            "has_descriptions": any(label_class.description for label_class in labels),
        },
    )


# Keys the review page keeps for itself: n focuses the note (Shift+N when a label uses n).
NOTE_KEY = "n"


@login_required
@require_safe
def review(request, project_id: int):
    project, role = reviewer_project_or_403(request.user, project_id)
    labels = _label_buttons(project)
    note_key = "N" if any(label_class.shortcut == NOTE_KEY for label_class in labels) else NOTE_KEY
    config = {
        **_page_config(request, project, labels),
        "noteKey": note_key,
        "maxLabels": project.max_labels_per_item,
        "thresholds": {
            "reviewAllBelowKappa": project.review_all_below_kappa,
            "reviewDisagreementsBelowKappa": project.review_disagreements_below_kappa,
            "minConsensusConfidence": project.min_consensus_confidence,
        },
    }
    return render(
        request,
        "annotation/review.html",
        {
            "project": project,
            "role": role,
            "labels": labels,
            "config": config,
            "note_keys": ["Shift", "n"] if note_key == "N" else ["n"],
            "note_aria": "Shift+N" if note_key == "N" else "N",
            "many_labels": len(labels) > 12,
        },
    )


# --- the project dashboard (reviewers read, admins change settings) --------------------------

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
    ("instructions", "textarea", None),
]


def _settings_fields(project: Project, values: dict | None, errors: dict) -> list[dict]:
    fields = []
    for name, kind, step in SETTINGS_FORM:
        model_field = Project._meta.get_field(name)
        fields.append(
            {
                "name": name,
                "label": name.replace("_", " ").capitalize(),
                "kind": kind,
                "step": step,
                "value": (values or {}).get(name, getattr(project, name)),
                "choices": list(model_field.choices or []),
                "help": model_field.help_text,
                "error": " ".join(str(e) for e in errors.get(name, []))
                if isinstance(errors.get(name), list)
                else errors.get(name),
            }
        )
    return fields


def _dashboard_context(project: Project, role: str) -> dict:
    from acquisition import curves
    from acquisition.selectors import model_versions_for_project

    from . import charts, dashboard

    snapshot = dashboard.agreement(project)
    curve = dashboard.learning_curve(project)
    kappa = (snapshot.kappa_matrix if snapshot else {}) or {}
    versions = list(model_versions_for_project(project)[:10])
    return {
        "project": project,
        "role": role,
        "is_admin": selectors.has_role(role, Role.ADMIN),
        "progress": dashboard.progress(project),
        "labels_chart": charts.bar_chart(dashboard.label_distribution(project), title="Final labels per class"),
        "curve_chart": charts.line_chart(
            [
                {"name": "accuracy", "points": [(p["labels"], p["accuracy"]) for p in curve]},
                {
                    "name": "macro-F1",
                    "points": [(p["labels"], p["macro_f1"]) for p in curve if p["macro_f1"] is not None],
                },
            ],
            title="Held-out accuracy and macro-F1 of each model version against the labels it was trained on",
            x_label="final labels",
            y_label="held-out score",
            y_range=(0.0, 1.0),
        ),
        "curve": curve,
        "stopping": curves.stopping_signal(curve),
        "snapshot": snapshot,
        "heatmap": charts.heatmap(
            kappa.get("annotators", []), kappa.get("values", []), title="Cohen's kappa between pairs of annotators"
        ),
        "annotators": dashboard.annotator_rows(project, snapshot),
        "queue": dashboard.queue_summary(project),
        "jobs": dashboard.active_jobs(project),
        "versions": versions,
        "drift": dashboard.latest_drift(project),
    }


@login_required
def project_dashboard(request, project_id: int):
    """Reviewers and admins see the dashboard; admins may change the project's settings (POST)."""
    from django.contrib import messages
    from django.db import transaction

    from quorum.errors import ServiceError

    from .api.serializers import ProjectSerializer
    from .services import project_update

    project, role = reviewer_project_or_403(request.user, project_id)
    errors, posted = {}, None
    if request.method == "POST":
        if not selectors.has_role(role, Role.ADMIN):
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
        from django.http import HttpResponseNotAllowed

        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    context = _dashboard_context(project, role)
    context["settings_fields"] = _settings_fields(project, posted, errors)
    context["settings_errors"] = errors
    context["config"] = {"projectId": project.pk, "apiRoot": reverse("api-projects").removesuffix("projects")}
    return render(request, "annotation/dashboard.html", context, status=400 if errors else 200)
