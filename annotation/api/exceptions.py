"""Turns domain errors into JSON responses with the same shape as DRF's own errors."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import ServiceError


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
        return Response({**detail, "code": exc.code}, status=exc.status_code)
    return drf_exception_handler(exc, context)
