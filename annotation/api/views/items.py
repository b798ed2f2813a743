"""Items: the pool pushed through the API (JSON array, JSON Lines, CSV; bulk, idempotent, validated) and
read back with filters and cursor pagination; the ingest batches that record each push."""

from __future__ import annotations

from django.conf import settings
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from quorum.web import ProjectScopedMixin, StrictCursorPagination

from ... import services
from ...ingest_records import POSITION_KIND, PayloadError, PayloadTooLarge, validate_records
from ...models import IngestBatch, Item, LabelClass, Role
from ..parsers import INGEST_PARSERS, ParsedPayload
from ..serializers import (
    IngestBatchSerializer,
    IngestRecordSerializer,
    IngestReportSerializer,
    ItemSerializer,
    rejected_as_dicts,
)


class _Counted:
    """Counts the records flowing through it; past ``limit`` it reads on only to count them, then
    raises ``PayloadError`` naming how many there were."""

    def __init__(self, records, limit: int):
        self.records, self.limit, self.n = records, limit, 0

    def __iter__(self):
        for record in self.records:
            self.n += 1
            if self.n > self.limit:
                self.n += sum(1 for _ in self.records)
                raise PayloadError(
                    f"{self.n} records in one request; the limit is {self.limit} (QUORUM_INGEST_MAX_RECORDS)"
                )
            yield record


class ItemFilter(filters.FilterSet):
    class Meta:
        model = Item
        fields = ["status", "embedding_state", "external_id"]


class ItemCursorPagination(StrictCursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class ItemListIngest(ProjectScopedMixin, generics.ListAPIView):
    """List a project's items (reviewers, admins) or push records into its pool (admins).

    POST takes a JSON array (``application/json``), JSON Lines (``application/x-ndjson``) or CSV
    (``text/csv``) of ``{external_id, text, metadata?, embedding?, label?, honeypot?}``. ``label``
    (a label name of the project) is a label the team already trusts: the item is final (source
    ``gold``) and never queued; with ``honeypot: true`` it is also a hidden test item, served to
    annotators like any other and scored against its label. Pushing the same records again changes
    nothing; a record without ``label`` keeps the item's. By default any invalid record refuses the whole request (400, nothing
    written, every rejected record listed); with ``?on_error=skip`` valid records are stored and
    the invalid ones listed.
    """

    read_role = Role.REVIEWER
    queryset = Item.objects.none()  # per request: get_queryset
    serializer_class = ItemSerializer
    filterset_class = ItemFilter
    pagination_class = ItemCursorPagination
    parser_classes = INGEST_PARSERS

    def get_queryset(self):
        return Item.objects.filter(project=self.project)

    @extend_schema(
        request={
            "application/json": IngestRecordSerializer(many=True),
            "application/x-ndjson": OpenApiTypes.STR,
            "text/csv": OpenApiTypes.STR,
        },
        parameters=[
            OpenApiParameter(
                "on_error",
                str,
                enum=["reject", "skip"],
                description="reject (default): all or nothing; skip: store the valid records",
            )
        ],
        responses={
            200: IngestReportSerializer,
            201: IngestReportSerializer,
            400: OpenApiResponse(description="malformed payload or invalid records; nothing written"),
        },
        examples=[
            OpenApiExample(
                "Two records",
                value=[
                    {"external_id": "t-1", "text": "My card has not arrived"},
                    {"external_id": "t-2", "text": "Refund please", "metadata": {"channel": "chat"}},
                    {"external_id": "t-3", "text": "Where is my card?", "label": "card_arrival"},
                    {"external_id": "t-4", "text": "Card still not here", "label": "card_arrival", "honeypot": True},
                ],
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, project_id: int):
        on_error = request.query_params.get("on_error", "reject")
        if on_error not in ("reject", "skip"):
            raise ValidationError({"on_error": f"must be 'reject' or 'skip', got {on_error!r}"})
        payload = request.data
        if not isinstance(payload, ParsedPayload):
            raise ParseError("the request body holds no records")
        kind = POSITION_KIND[payload.format]
        counted = _Counted(payload.records, settings.QUORUM_INGEST_MAX_RECORDS)
        try:  # the body is read and parsed here, record by record, as the validation consumes it
            checked = validate_records(
                counted,
                embedding_dim=self.project.embedding_dim,
                max_text_chars=settings.QUORUM_MAX_TEXT_CHARS,
                position_kind=kind,
                labels=dict(
                    LabelClass.objects.filter(project=self.project).order_by("order", "id").values_list("name", "id")
                ),
                multi_label=self.project.multi_label,
                allow_empty_tags=self.project.allow_empty_tags,
            )
        except PayloadTooLarge as exc:
            raise ParseError(str(exc), code="payload_too_large") from None
        except PayloadError as exc:
            raise ParseError(str(exc), code="malformed") from None
        if not counted.n:
            raise ParseError("the request body holds no records")
        if checked.rejected and (on_error == "reject" or not checked.records):
            return Response(
                {
                    "detail": f"{len(checked.rejected)} of {counted.n} records are invalid; nothing was written"
                    + ("" if on_error == "skip" else " (send ?on_error=skip to store the valid ones)"),
                    "rejected_count": len(checked.rejected),
                    "rejected": rejected_as_dicts(checked.rejected, kind),
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        report = services.items_ingest(
            project=self.project,
            records=checked.records,
            rejected=checked.rejected,
            fmt=payload.format,
            user=request.user,
        )
        body = {
            "batch_id": report.batch_id,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "embeddings_written": report.embeddings_written,
            "awaiting_embedding": report.awaiting_embedding,
            "labels_set": report.labels_set,
            "rejected_count": len(report.rejected),
            "rejected": rejected_as_dicts(report.rejected, kind),
        }
        return Response(body, status=status.HTTP_201_CREATED if report.created else status.HTTP_200_OK)


class IngestBatchList(ProjectScopedMixin, generics.ListAPIView):
    """The project's ingest batches, newest first, with their counts and processing state."""

    read_role = Role.ADMIN
    queryset = IngestBatch.objects.none()
    serializer_class = IngestBatchSerializer

    def get_queryset(self):
        return IngestBatch.objects.filter(project=self.project).select_related("created_by").order_by("-id")


class IngestBatchDetail(ProjectScopedMixin, generics.RetrieveAPIView):
    read_role = Role.ADMIN
    queryset = IngestBatch.objects.none()
    serializer_class = IngestBatchSerializer
    lookup_url_kwarg = "batch_id"

    def get_queryset(self):
        return IngestBatch.objects.filter(project=self.project).select_related("created_by")
