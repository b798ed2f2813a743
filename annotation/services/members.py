"""Project membership: who annotates, reviews and administers a project."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from quorum.errors import NotFound, ServiceError

from ..models import Membership, Project, Role


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
        membership.role = role
        membership.save(update_fields=["role"])
    return membership, False


@transaction.atomic
def membership_remove(*, project: Project, username: str) -> None:
    Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
    membership = Membership.objects.select_related("user").filter(project=project, user__username=username).first()
    if membership is None:
        raise NotFound({"username": f"{username!r} is not a member of this project"}, code="not_member")
    _ensure_an_admin_remains(project, membership)
    membership.delete()
