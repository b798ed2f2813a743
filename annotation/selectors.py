"""Reads of the annotation app that carry a rule: who may see which project."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from .errors import NotFound
from .models import ItemStatus, Membership, Project, Role

ROLE_RANK = {Role.ANNOTATOR: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


def projects_for_user(user) -> QuerySet[Project]:
    """Projects the user is a member of (superusers see all)."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def role_in_project(user, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


def roles_by_project(user, projects) -> dict[int, str]:
    """The user's role in each of ``projects``, in one query."""
    if user.is_superuser:
        return {project.pk: Role.ADMIN for project in projects}
    return dict(Membership.objects.filter(user=user, project__in=projects).values_list("project_id", "role"))


def has_role(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]


def project_for_user(user, project_id: int) -> tuple[Project, str]:
    """The project and the user's role in it. Unknown projects and projects the user is not a
    member of look the same (404), so ids reveal nothing."""
    project = Project.objects.filter(pk=project_id).first()
    role = role_in_project(user, project) if project is not None else None
    if project is None or role is None:
        raise NotFound(f"project {project_id} does not exist or you are not a member of it", code="not_found")
    return project, role


def item_counts(project: Project) -> dict[str, int]:
    counts = dict(project.items.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    by_status = {status: counts.get(status, 0) for status in ItemStatus.values}
    return {"total": sum(by_status.values()), **by_status}
