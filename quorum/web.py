"""Web plumbing shared by every app's pages and REST endpoints.

- ``exception_handler``: DRF's handler, plus domain errors (``quorum.errors``) as JSON 4xx
  responses with the same shape as DRF's own errors.
- ``ProjectScopedMixin``: API views under ``projects/{project_id}/…`` resolve the project for
  members only (others get 404: ids reveal nothing) and check the role each method needs.
- ``member_project_or_404`` / ``reviewer_project_or_403`` / ``admin_project_or_403``: the same rules
  for the browser pages.
- ``DownloadNegotiation``: download endpoints whose body type is fixed by the endpoint.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as PagePermissionDenied
from django.http import Http404
from rest_framework.exceptions import MethodNotAllowed, PermissionDenied
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation import selectors
from annotation.models import Project, Role

from .errors import NotFound, ServiceError

MAX_ID = 2**63 - 1


def query_int(request, name: str, *, minimum: int = 1, maximum: int = MAX_ID) -> int | None:
    """Query parameter ``name`` as an integer (ASCII digits only, within bounds), None when absent;
    a 400 naming the parameter otherwise. (``"²".isdigit()`` is true and ``int("٣")`` is 3: neither
    is an id.)"""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not minimum <= int(raw) <= maximum:
        reason = f"must be an integer from {minimum} to {maximum} written in the digits 0-9"
        raise ServiceError({"detail": f"invalid request: {name}: {reason}", "errors": {name: reason}})
    return int(raw)


class StrictCursorPagination(CursorPagination):
    """DRF's cursor pagination, except that a ``page_size`` that is not an integer from 1 to
    ``max_page_size`` is a 400 naming it (DRF falls back to the default size silently)."""

    page_size_query_param = "page_size"

    def get_page_size(self, request):
        size = query_int(request, self.page_size_query_param, maximum=self.max_page_size or MAX_ID)
        return self.page_size if size is None else size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size or MAX_ID}
        return parameters


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
        return Response({**detail, "code": exc.code}, status=exc.status_code)
    return drf_exception_handler(exc, context)


class ProjectScopedMixin:
    """Resolves ``project_id`` from the URL for members only and checks the role a method needs."""

    read_role = Role.ANNOTATOR
    write_role = Role.ADMIN

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method.lower() not in self.http_method_names or not hasattr(self, request.method.lower()):
            raise MethodNotAllowed(request.method)  # before the project is looked up: a 405, not a 404
        self.project, self.role = selectors.project_for_user(request.user, kwargs["project_id"])
        needed = self.read_role if request.method in ("GET", "HEAD", "OPTIONS") else self.write_role
        if not selectors.has_role(self.role, needed):
            raise PermissionDenied(f"this needs the {needed} role in project {self.project.pk}; you are {self.role}")


class DownloadNegotiation(BaseContentNegotiation):
    """Content negotiation of the download endpoints: their body's type is fixed by the endpoint (and
    ``?format=`` of the export), so neither the Accept header nor DRF's ``?format=`` override
    (``URL_FORMAT_OVERRIDE``) picks a renderer; errors are always JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def member_project_or_404(user, project_id: int) -> tuple[Project, str]:
    """The project and the user's role; a 404 for unknown projects and non-members alike."""
    try:
        return selectors.project_for_user(user, project_id)
    except NotFound:
        raise Http404("No such project.") from None


def reviewer_project_or_403(user, project_id: int) -> tuple[Project, str]:
    """The project and the user's role, for reviewers and admins. Non-members get a 404 (ids
    reveal nothing); members without the reviewer role get a 403, as in the API."""
    project, role = member_project_or_404(user, project_id)
    if not selectors.has_role(role, Role.REVIEWER):
        raise PagePermissionDenied("Reviewing needs the reviewer or admin role in this project.")
    return project, role


def admin_project_or_403(user, project_id: int) -> Project:
    """The project, for its admins (reviewers get a 403, non-members a 404)."""
    project, role = reviewer_project_or_403(user, project_id)
    if not selectors.has_role(role, Role.ADMIN):
        raise PagePermissionDenied("This needs the admin role in this project.")
    return project
