"""Project membership: who annotates, reviews and administers a project."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from quorum.errors import NotFound, ServiceError

from ..models import Membership, Project, Role
from .leases import leases_release


def _user_by_username(username: str):
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ServiceError({"username": f"no active user named {username!r}"}, code="unknown_user")
    return user


def _ensure_an_admin_remains(project: Project, leaving: Membership) -> None:
    admins = Membership.objects.filter(project=project, role=Role.ADMIN).exclude(pk=leaving.pk)
    if leaving.role == Role.ADMIN and not admins.exists():
        raise ServiceError(
            {"role": f"{leaving.user.username!r} is the project's last admin; make someone else admin first"},
            code="last_admin",
        )


@transaction.atomic
def membership_set(*, project: Project, username: str, role: str) -> tuple[Membership, bool]:
    """Add a member or change their role. Returns ``(membership, created)``."""
    if role not in Role.values:
        raise ServiceError({"role": f"must be one of {', '.join(Role.values)}, got {role!r}"})
    user = _user_by_username(username)
    Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()  # serialise admin changes
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        return Membership.objects.create(project=project, user=user, role=role), True
    if membership.role != role:
        if role != Role.ADMIN:
            _ensure_an_admin_remains(project, membership)
        was_annotator = membership.role == Role.ANNOTATOR
        membership.role = role
        membership.save(update_fields=["role"])
        if was_annotator:
            # no longer an annotator: the items they hold go back to the queue now
            leases_release(user=user, project=project)
    return membership, False


@transaction.atomic
def membership_remove(*, project: Project, username: str) -> None:
    Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
    membership = Membership.objects.select_related("user").filter(project=project, user__username=username).first()
    if membership is None:
        raise NotFound({"username": f"{username!r} is not a member of this project"}, code="not_member")
    _ensure_an_admin_remains(project, membership)
    membership.delete()
    leases_release(user=membership.user, project=project)


@transaction.atomic
def membership_reinstate(*, project: Project, username: str) -> Membership:
    """Lift a member's pause (``services.quality``). Only honeypot answers given from now on count
    towards the minimum accuracy, so the old answers that paused them do not pause them again.
    Reinstating someone who is not paused changes nothing (idempotent)."""
    membership = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(project=project, user__username=username)
        .first()
    )
    if membership is None:
        raise NotFound({"username": f"{username!r} is not a member of this project"}, code="not_member")
    if membership.paused_at is not None:
        membership.paused_at = None
        membership.pause_reason = ""
        membership.reinstated_at = timezone.now()
        membership.save(update_fields=["paused_at", "pause_reason", "reinstated_at"])
    return membership
