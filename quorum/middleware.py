"""Middleware shared by every page and endpoint.

``RejectUnsafeInput``: a NUL character in the URL's path or in a query parameter (name or value) is
refused with a 400 that names the parameter, before any view runs. PostgreSQL cannot store or
compare text holding NUL, so such a value would otherwise reach the database and fail there (a 500).
Request bodies are checked by the API's parsers and serializers (``quorum.security``).

``QuietClientErrors``: a log filter (``LOGGING``) that keeps one line, without the traceback, for the
requests refused with a 4xx (a page's 403 is the client's mistake, not the server's).
"""

from __future__ import annotations

import logging

from django.http import HttpResponseBadRequest, JsonResponse

NUL = "\x00"


def unsafe_input(request) -> tuple[str, str] | None:
    """(where, why) of the first NUL in the path or the query string, or None."""
    if NUL in request.path:
        return "path", "the URL path contains a NUL character"
    for name, values in request.GET.lists():
        if NUL in name:
            return "query", "a query parameter name contains a NUL character"
        if any(NUL in value for value in values):
            return name, "contains a NUL character"
    return None


class RejectUnsafeInput:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        problem = unsafe_input(request)
        if problem is None:
            return self.get_response(request)
        field, reason = problem
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"detail": f"invalid request: {field}: {reason}", "code": "invalid", "errors": {field: reason}},
                status=400,
            )
        return HttpResponseBadRequest(f"Bad request: {field}: {reason}.", content_type="text/plain; charset=utf-8")


class QuietClientErrors(logging.Filter):
    """Drops the traceback of ``django.request`` records about 4xx answers (the line stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.name.startswith("django.request") and status is not None and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
