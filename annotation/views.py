"""Browser pages of the annotation app: my projects, the labelling page, the review page, the
members page (admins add and invite people, change roles) and the invitation page (an invited
account sets its password: ``services.accounts``).

Both working pages are thin shells: they render the project, its instructions and label buttons,
and a small script drives the REST API so that items follow each other without a page reload
(labelling: ``/api/v1/projects/{id}/next``, submit, skip, undo; review: ``reviews/next``,
``reviews/{id}/resolve``, ``agreement``).
"""

from __future__ import annotations

from collections import defaultdict

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, F, Q
from django.http import HttpResponseNotAllowed
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_safe

from quorum.errors import ServiceError
from quorum.web import PagePermissionDenied, member_project_or_404, reviewer_project_or_403

from . import selectors, services
from .models import Annotation, Item, ItemStatus, Membership, Project, QueueEntry, ReviewStatus, ReviewTask, Role
from .services.projects import SHORTCUT_KEYS

PROJECT_ADMIN_ROLES = (Role.ANNOTATOR, Role.REVIEWER)  # what a project admin (not staff) gives new accounts

# --- page reads ----------------------------------------------------------------------------


def _start_of_today():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def home_rows(user) -> list[dict]:
    """My projects with my role, my progress and the project's totals, in six queries whatever
    the number of projects: projects, roles, item counts by status, my annotations, open slots,
    open review tasks of final items (suspected label errors: the item keeps its label meanwhile)."""
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

    # Open reviews: the items in review, and the open tasks of items that stay final meanwhile.
    final_in_review = dict(
        ReviewTask.objects.filter(project_id__in=ids, status=ReviewStatus.OPEN)
        .exclude(item__status=ItemStatus.IN_REVIEW)
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
                "open_reviews": by_status.get(ItemStatus.IN_REVIEW, 0) + final_in_review.get(project.pk, 0),
            }
        )
    return rows


# Once the single keys run out, the other labels get two-key chords: a layer key, then a key.
CHORD_PREFIXES = ".,;"
# Multi-label pages: the key of "none of these" (the empty tag set). Label shortcuts are digits and
# letters (SHORTCUT_KEYS), chords start with CHORD_PREFIXES and "/" opens the filter: "-" is none of
# them. The others stand in should a label have been given "-" as its shortcut outside the API.
NONE_KEY = "-"
NONE_KEY_FALLBACKS = "=`"


def _none_key(labels: list) -> str:
    taken = {label_class.shortcut for label_class in labels}
    return next((key for key in NONE_KEY + NONE_KEY_FALLBACKS if key not in taken), "")


def _label_buttons(project: Project) -> list:
    """The labels in order, each with ``keys``: its own shortcut, or a chord (``".1"``: ``.`` then
    ``1``) when it has none, so that every label of a large set can be picked with the keyboard."""
    labels = list(project.labels.order_by("order", "id"))
    chords = (prefix + key for prefix in CHORD_PREFIXES for key in SHORTCUT_KEYS)
    for label_class in labels:
        # Break points after underscores, so that long snake_case names wrap between words.
        label_class.name_parts = label_class.name.split("_")
        label_class.keys = label_class.shortcut or next(chords, "")
    return labels


def _page_config(request, project: Project, labels: list) -> dict:
    """What the page's script needs. Multi-label projects add ``taskType``, ``allowEmptyTags`` and
    ``noneKey``: label keys toggle tags, Enter saves the set (``static/js/label.js``, ``review.js``)."""
    config = {
        "projectId": project.pk,
        "apiRoot": reverse("api-projects").removesuffix("projects"),
        "csrfToken": get_token(request),
        "loginUrl": f"{reverse('login')}?next={request.path}",
        "labels": [{"name": label_class.name, "shortcut": label_class.shortcut} for label_class in labels],
        "chordPrefixes": CHORD_PREFIXES,
    }
    if project.multi_label:
        config.update(taskType=project.task_type, allowEmptyTags=project.allow_empty_tags, noneKey=_none_key(labels))
    return config


def _task_context(project: Project, labels: list) -> dict:
    """Template switches of the multi-label pages (tag toggles, the "none of these" control)."""
    return {
        "multi_label": project.multi_label,
        "allow_empty_tags": project.multi_label and project.allow_empty_tags,
        "none_key": _none_key(labels),
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
            "chords": any(len(label_class.keys) > 1 for label_class in labels),
            **_task_context(project, labels),
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
            **_task_context(project, labels),
        },
    )


# --- the project dashboard (reviewers read, admins change settings) --------------------------


class InvitationAccept(auth_views.PasswordResetConfirmView):
    """The one-time invitation link: the invitee chooses a password (Django's validators apply),
    then logs in. The token is Django's password-reset token, so the link stops working once a
    password is set; an invalid or used link shows a message instead of the form."""

    template_name = "registration/invitation.html"
    reset_url_token = "set-password"
    success_url = reverse_lazy("login")
    title = "Choose your password"


# --- members ---------------------------------------------------------------------------------


class MemberAddForm(forms.Form):
    """Add someone to the project: an existing account by its username, or a new account (e-mail
    needed) with an initial password or, when the password is left empty, a one-time invitation link."""

    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    email = forms.EmailField(required=False, help_text="For a new account.")
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="For a new account; leave empty to get an invitation link to send instead.",
    )


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


def _member_rows(project: Project) -> list[dict]:
    return [
        {"username": m.user.get_username(), "email": m.user.email, "role": m.role, "paused": m.paused_at is not None}
        for m in Membership.objects.filter(project=project).select_related("user").order_by("user__username")
    ]


def _member_add(request, project: Project, form: MemberAddForm, roles: tuple[str, ...]) -> bool:
    """Apply a valid add form; errors go onto the form. True when something changed."""
    data = form.cleaned_data
    User = get_user_model()
    try:
        with transaction.atomic():
            if User.objects.filter(username=data["username"]).exists():
                if data["email"] or data["password"]:
                    form.add_error("username", "this account exists already: leave e-mail and password empty to add it")
                    return False
                membership, created = services.membership_set(
                    project=project, username=data["username"], role=data["role"]
                )
                verb = "added as" if created else "is now"
                messages.success(request, f"{membership.user.username} {verb} {membership.role}.")
                return True
            if not data["email"]:
                form.add_error("email", "a new account needs an e-mail address")
                return False
            created_user = services.user_create(
                username=data["username"],
                email=data["email"],
                password=data["password"] or None,
                project=project,
                role=data["role"],
                allowed_roles=roles,
            )
    except ServiceError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"__all__": str(exc.detail)}
        errors = detail.get("errors", detail)
        for field, message in errors.items():
            form.add_error(field if field in form.fields else None, str(message))
        return False
    name = created_user.user.get_username()
    if created_user.invitation_path:
        link = request.build_absolute_uri(created_user.invitation_path)
        messages.success(request, f"{name} was created as {data['role']}. Send them this one-time link: {link}")
    else:
        messages.success(request, f"{name} was created as {data['role']} and can sign in now.")
    return True


@login_required
def members(request, project_id: int):
    """The project's members: reviewers and admins see them; admins add people (an existing account
    or a new one, with a password or an invitation link), change roles and remove members, with the
    services behind ``POST /api/v1/users`` and ``/api/v1/projects/{id}/members``. Project admins give
    the annotator and reviewer roles to new accounts; staff give any role."""
    project, role = reviewer_project_or_403(request.user, project_id)
    is_admin = selectors.has_role(role, Role.ADMIN)
    roles = tuple(Role.values) if request.user.is_staff else PROJECT_ADMIN_ROLES  # for new accounts
    form = MemberAddForm()
    status = 200
    if request.method == "POST":
        if not is_admin:
            raise PagePermissionDenied("Managing members needs the admin role in this project.")
        action = request.POST.get("action", "add")
        if action == "add":
            form = MemberAddForm(request.POST)
            if form.is_valid() and _member_add(request, project, form, roles):
                return redirect("members", project_id=project.pk)
            status = 400
        elif action in ("role", "remove"):
            username = request.POST.get("username", "")
            try:
                with transaction.atomic():
                    if action == "remove":
                        services.membership_remove(project=project, username=username)
                        messages.success(request, f"{username} is no longer a member.")
                    else:
                        role_form = MemberRoleForm(request.POST)
                        if not role_form.is_valid():
                            raise ServiceError({"role": " ".join(role_form.errors["role"])})
                        services.membership_set(project=project, username=username, role=role_form.cleaned_data["role"])
                        messages.success(request, f"{username} is now {role_form.cleaned_data['role']}.")
            except ServiceError as exc:
                detail = exc.detail if isinstance(exc.detail, dict) else {"": str(exc.detail)}
                messages.error(request, " ".join(str(v) for v in detail.values()))
            return redirect("members", project_id=project.pk)
        else:
            messages.error(request, f"unknown action {action!r}")
            return redirect("members", project_id=project.pk)
    elif request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    context = {
        "project": project,
        "is_admin": is_admin,
        "rows": _member_rows(project),
        "form": form,
        "role_choices": Role.choices,
    }
    return render(request, "annotation/members.html", context, status=status)
