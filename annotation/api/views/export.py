"""The label export, streamed (JSON Lines or CSV)."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from quorum.errors import ServiceError
from quorum.web import DownloadNegotiation, ProjectScopedMixin

from ... import export
from ...models import Role

HISTORY_VALUES = {"0": False, "1": True, "false": False, "true": True}


class ProjectExport(ProjectScopedMixin, APIView):
    """Every item of the project with its final label and its annotations, streamed (reviewers and
    admins): ``?format=jsonl`` (default, one JSON object per line) or ``?format=csv`` (``metadata``
    and ``annotations`` as compact JSON strings); ``?status=final`` for the items with a final label
    only. Records come in item id order: ``external_id, text, label, confidence, source, status,
    metadata, annotations`` (``[{annotator, label, created_at}]``: the labels given to the current
    text). ``?history=1`` adds ``history``: the item's earlier texts with the labels given to them."""

    read_role = Role.REVIEWER
    renderer_classes = [JSONRenderer]
    content_negotiation_class = DownloadNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=list(export.FORMATS), default="jsonl", description="jsonl or csv"),
            OpenApiParameter(
                "status",
                str,
                enum=list(export.STATUS_FILTERS),
                default="all",
                description="all (default): every item; final: only the items with a final label",
            ),
            OpenApiParameter(
                "history",
                str,
                enum=list(HISTORY_VALUES),
                default="0",
                description="1: add each item's earlier texts with the labels given to them",
            ),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
            400: OpenApiResponse(description="unknown format or status"),
        },
    )
    def get(self, request, project_id):
        fmt = request.query_params.get("format") or "jsonl"
        which = request.query_params.get("status") or "all"
        errors = {}
        if fmt not in export.FORMATS:
            errors["format"] = f"unknown format {fmt!r}; allowed: {', '.join(export.FORMATS)}"
        if which not in export.STATUS_FILTERS:
            errors["status"] = f"unknown status filter {which!r}; allowed: {', '.join(export.STATUS_FILTERS)}"
        history = request.query_params.get("history") or "0"
        if history not in HISTORY_VALUES:
            errors["history"] = f"history must be one of {', '.join(HISTORY_VALUES)}, got {history!r}"
        if errors:
            summary = "; ".join(f"{field}: {message}" for field, message in errors.items())
            raise ServiceError(
                {
                    "detail": f"invalid request: {summary}",
                    "errors": errors,
                    "allowed": {
                        "format": list(export.FORMATS),
                        "status": list(export.STATUS_FILTERS),
                        "history": list(HISTORY_VALUES),
                    },
                },
                code="invalid",
            )
        response = StreamingHttpResponse(
            export.stream(self.project, fmt, final_only=which == "final", history=HISTORY_VALUES[history]),
            content_type=export.CONTENT_TYPES[fmt],
        )
        response["Content-Disposition"] = f'attachment; filename="project-{self.project.pk}-labels.{fmt}"'
        return response
