"""What the API views of the people side share: validating a body with a serializer into a field-named
400, and the role checks of the endpoints that are not under ``projects/{id}`` (assignments,
annotations, reviews: the object names its project)."""

from __future__ import annotations

from rest_framework.exceptions import PermissionDenied

from quorum.errors import ServiceError

from ... import selectors
from ...models import Role


def validated(serializer_class, data) -> dict:
    """Validate a request body; a 400 that says what and where: ``{detail, code, errors: {field: msg}}``."""
    if data is None:
        data = {}
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return serializer.validated_data
    errors = {}
    for field, messages in serializer.errors.items():
        if isinstance(messages, dict):  # a list field: {index: [messages]}
            messages = [f"item {index}: {' '.join(map(str, msgs))}" for index, msgs in messages.items()]
        errors["body" if field == "non_field_errors" else field] = " ".join(str(message) for message in messages)
    summary = "; ".join(f"{field}: {message}" for field, message in errors.items())
    raise ServiceError({"detail": f"invalid request: {summary}", "errors": errors}, code="invalid")


def require_role(role: str | None, project) -> None:
    if not selectors.has_role(role, Role.ANNOTATOR):
        raise PermissionDenied(f"you are not a member of project {project.pk}")


def require_member(user, project) -> None:
    require_role(selectors.role_in_project(user, project), project)
