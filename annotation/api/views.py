"""REST endpoints: thin views that check the caller's role, then call a selector or a service."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from quorum.errors import NotFound, ServiceError
from quorum.web import DownloadNegotiation, ProjectScopedMixin

from .. import export, selectors, services
from ..ingest_records import POSITION_KIND, validate_records
from ..models import Annotation, IngestBatch, Item, LabelClass, Membership, ReviewTask, Role
from .parsers import INGEST_PARSERS, ParsedPayload
from .serializers import (
    AgreementSerializer,
    AnnotationChangeSerializer,
    AnnotationListSerializer,
    AnnotationResponseSerializer,
    AnnotationSubmitSerializer,
    AssignmentResponseSerializer,
    IngestBatchSerializer,
    IngestRecordSerializer,
    IngestReportSerializer,
    ItemSerializer,
    MembershipSerializer,
    MembershipWriteSerializer,
    NextRequestSerializer,
    NextResponseSerializer,
    ProjectDetailSerializer,
    ProjectSerializer,
    ReviewNextResponseSerializer,
    ReviewOutSerializer,
    ReviewResolveSerializer,
    ReviewResponseSerializer,
    RoleSerializer,
    SkipSerializer,
    annotation_payload,
    assignment_payload,
    rejected_as_dicts,
    suggestion_payload,
)


class ProjectListCreate(generics.ListCreateAPIView):
    """Projects you are a member of; create one (you become its admin)."""

    serializer_class = ProjectSerializer

    def get_queryset(self):
        return (
            selectors.projects_for_user(self.request.user)
            .prefetch_related(Prefetch("labels", queryset=LabelClass.objects.order_by("order", "id")))
            .order_by("id")
        )

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if self.request.method == "GET":
            context["roles"] = selectors.roles_by_project(self.request.user, self.get_queryset())
        return context

    def create(self, request, *args, **kwargs):
        if not (request.user.is_staff or request.user.has_perm("annotation.add_project")):
            raise PermissionDenied("creating projects needs staff status or the 'annotation.add_project' permission")
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        project = services.project_create(user=request.user, name=data.pop("name"), labels=data.pop("labels"), **data)
        output = ProjectDetailSerializer(project, context={"roles": {project.pk: Role.ADMIN}})
        return Response(output.data, status=status.HTTP_201_CREATED)


class ProjectDetail(ProjectScopedMixin, APIView):
    """A project with its labels, settings and item counts. Admins change settings or delete it."""

    def _output(self, project):
        return ProjectDetailSerializer(project, context={"roles": {project.pk: self.role}}).data

    @extend_schema(responses=ProjectDetailSerializer)
    def get(self, request, project_id):
        return Response(self._output(self.project))

    @extend_schema(request=ProjectSerializer, responses=ProjectDetailSerializer)
    def patch(self, request, project_id):
        serializer = ProjectSerializer(self.project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        labels = data.pop("labels", None)
        project = services.project_update(project=self.project, labels=labels, **data)
        return Response(self._output(project))

    @extend_schema(responses={204: None})
    def delete(self, request, project_id):
        self.project.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ItemFilter(filters.FilterSet):
    class Meta:
        model = Item
        fields = ["status", "embedding_state", "external_id"]


class ItemCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class ItemListIngest(ProjectScopedMixin, generics.ListAPIView):
    """List a project's items (reviewers, admins) or push records into its pool (admins).

    POST takes a JSON array (``application/json``), JSON Lines (``application/x-ndjson``) or CSV
    (``text/csv``) of ``{external_id, text, metadata?, embedding?}``. Pushing the same records
    again changes nothing. By default any invalid record refuses the whole request (400, nothing
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
        if not isinstance(payload, ParsedPayload) or not payload.records:
            raise ParseError("the request body holds no records")
        if len(payload.records) > settings.QUORUM_INGEST_MAX_RECORDS:
            raise ParseError(
                f"{len(payload.records)} records in one request; the limit is {settings.QUORUM_INGEST_MAX_RECORDS} (QUORUM_INGEST_MAX_RECORDS)"
            )
        kind = POSITION_KIND[payload.format]
        checked = validate_records(
            payload.records,
            embedding_dim=self.project.embedding_dim,
            max_text_chars=settings.QUORUM_MAX_TEXT_CHARS,
            position_kind=kind,
        )
        if checked.rejected and (on_error == "reject" or not checked.records):
            return Response(
                {
                    "detail": f"{len(checked.rejected)} of {len(payload.records)} records are invalid; nothing was written"
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


class MemberListCreate(ProjectScopedMixin, generics.ListAPIView):
    """Members of the project (reviewers, admins); admins add one or change a role."""

    read_role = Role.REVIEWER
    queryset = Membership.objects.none()
    serializer_class = MembershipSerializer
    pagination_class = None

    def get_queryset(self):
        return Membership.objects.filter(project=self.project).select_related("user").order_by("user__username")

    @extend_schema(request=MembershipWriteSerializer, responses={200: MembershipSerializer, 201: MembershipSerializer})
    def post(self, request, project_id):
        serializer = MembershipWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership, created = services.membership_set(project=self.project, **serializer.validated_data)
        return Response(
            MembershipSerializer(membership).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class MemberDetail(ProjectScopedMixin, APIView):
    read_role = Role.REVIEWER

    def _membership(self, username):
        membership = (
            Membership.objects.select_related("user").filter(project=self.project, user__username=username).first()
        )
        if membership is None:
            raise NotFound({"username": f"{username!r} is not a member of this project"})
        return membership

    @extend_schema(responses=MembershipSerializer)
    def get(self, request, project_id, username):
        return Response(MembershipSerializer(self._membership(username)).data)

    @extend_schema(request=RoleSerializer, responses=MembershipSerializer)
    def patch(self, request, project_id, username):
        self._membership(username)
        serializer = RoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership, _ = services.membership_set(
            project=self.project, username=username, role=serializer.validated_data["role"]
        )
        return Response(MembershipSerializer(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id, username):
        services.membership_remove(project=self.project, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- the annotator's queue -------------------------------------------------------------------


def _validated(serializer_class, data) -> dict:
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


def _require_role(role: str | None, project) -> None:
    if not selectors.has_role(role, Role.ANNOTATOR):
        raise PermissionDenied(f"you are not a member of project {project.pk}")


def _require_member(user, project) -> None:
    _require_role(selectors.role_in_project(user, project), project)


class NextAssignment(APIView):
    """Lease the next item of the project to you (or hand back a lease you have not shown yet).

    ``held`` lists the assignment ids the client already shows (current + prefetched); at most
    two live leases per annotator. ``code`` says why ``assignment`` is null: ``queue_empty`` (see
    ``progress.refill_running``) or ``lease_limit``. ``suggestion`` only with ``"suggest": true``.
    """

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Any member may annotate; project and role come in one query (the hot path).
        self.project, self.role = selectors.project_with_role(request.user, kwargs["project_id"])

    @extend_schema(request=NextRequestSerializer, responses={200: NextResponseSerializer})
    def post(self, request, project_id):
        data = _validated(NextRequestSerializer, request.data)
        result = services.assignment_next(project=self.project, user=request.user, held=data["held"])
        body = {
            "assignment": None if result.assignment is None else assignment_payload(result.assignment, result.entry),
            "suggestion": suggestion_payload(result.entry) if data["suggest"] and result.assignment else None,
            "progress": result.progress or selectors.annotator_progress(self.project, request.user),
            "code": result.code,
        }
        return Response(body)


class AssignmentAnnotation(APIView):
    """Submit your label for a leased item. 201 the first time; 200 when the same assignment is
    submitted again (same label: nothing changes; another label: a change while the item is open).
    409 ``lease_expired`` when the lease ran out and its slot went to someone else."""

    @extend_schema(
        request=AnnotationSubmitSerializer,
        responses={201: AnnotationResponseSerializer, 200: AnnotationResponseSerializer},
    )
    def post(self, request, assignment_id):
        assignment, role = selectors.assignment_for_member(request.user, assignment_id)
        _require_role(role, assignment.project)
        data = _validated(AnnotationSubmitSerializer, request.data)
        result = services.annotation_submit(
            assignment_id=assignment.pk, user=request.user, label=data["label"], time_spent_ms=data["time_spent_ms"]
        )
        body = {
            "annotation": annotation_payload(result.annotation, username=request.user.get_username()),
            "progress": selectors.annotator_progress(assignment.project, request.user),
        }
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class AssignmentSkip(APIView):
    """Give an item back (optional reason): others get its slot; you never get it again."""

    @extend_schema(request=SkipSerializer, responses={200: AssignmentResponseSerializer})
    def post(self, request, assignment_id):
        assignment, role = selectors.assignment_for_member(request.user, assignment_id)
        _require_role(role, assignment.project)
        data = _validated(SkipSerializer, request.data)
        skipped = services.assignment_skip(assignment_id=assignment.pk, user=request.user, reason=data["reason"])
        skipped.item = assignment.item
        body = {
            "assignment": assignment_payload(skipped, selectors.queue_entry_of_item(assignment.item_id)),
            "progress": selectors.annotator_progress(assignment.project, request.user),
        }
        return Response(body)


class AnnotationCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class ProjectAnnotationList(ProjectScopedMixin, generics.ListAPIView):
    """Annotations of the project, newest first: annotators see their own; reviewers and admins
    everyone's (``?user=<username>`` for one annotator's)."""

    queryset = Annotation.objects.none()
    serializer_class = AnnotationListSerializer
    pagination_class = AnnotationCursorPagination
    filter_backends = []

    @extend_schema(
        parameters=[
            OpenApiParameter("user", str, description="username (reviewers and admins; annotators: only their own)"),
            OpenApiParameter("item", int, description="item id"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        queryset = selectors.annotations_visible(
            self.project, self.request.user, self.role, username=self.request.query_params.get("user")
        )
        item = self.request.query_params.get("item")
        if item is not None:
            if not item.isdigit():
                raise ServiceError({"detail": "item must be an item id", "errors": {"item": "not an integer"}})
            queryset = queryset.filter(item_id=int(item))
        return queryset


class AnnotationDetail(APIView):
    """One of your annotations; PATCH changes its label while the item is neither final nor in review."""

    @extend_schema(responses={200: AnnotationResponseSerializer})
    def get(self, request, annotation_id):
        annotation = selectors.annotation_for_user(request.user, annotation_id)
        _require_member(request.user, annotation.project)
        return Response({"annotation": annotation_payload(annotation, username=request.user.get_username())})

    @extend_schema(request=AnnotationChangeSerializer, responses={200: AnnotationResponseSerializer})
    def patch(self, request, annotation_id):
        annotation = selectors.annotation_for_user(request.user, annotation_id)
        _require_member(request.user, annotation.project)
        data = _validated(AnnotationChangeSerializer, request.data)
        changed = services.annotation_change(annotation_id=annotation.pk, user=request.user, label=data["label"])
        return Response({"annotation": annotation_payload(changed, username=request.user.get_username())})


class AnnotationUndo(APIView):
    """Take your label back while the item is open: the item is leased to you again and returned
    (the same shape as ``next``), so the page can show it."""

    @extend_schema(request=None, responses={200: AssignmentResponseSerializer})
    def post(self, request, annotation_id):
        annotation = selectors.annotation_for_user(request.user, annotation_id)
        _require_member(request.user, annotation.project)
        assignment = services.annotation_undo(annotation_id=annotation.pk, user=request.user)
        body = {
            "assignment": assignment_payload(assignment, selectors.queue_entry_of_item(assignment.item_id)),
            "progress": selectors.annotator_progress(annotation.project, request.user),
        }
        return Response(body)


# --- expert review and agreement -------------------------------------------------------------


class ReviewCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ProjectReviewList(ProjectScopedMixin, generics.ListAPIView):
    """Review tasks of the project, newest first (reviewers and admins); ``?status=open|resolved``."""

    read_role = Role.REVIEWER
    queryset = ReviewTask.objects.none()
    serializer_class = ReviewOutSerializer
    pagination_class = ReviewCursorPagination
    filter_backends = []

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=["open", "resolved"])])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.reviews_of_project(self.project, status=self.request.query_params.get("status"))

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(selectors.review_payloads(page))


class ProjectReviewNext(ProjectScopedMixin, APIView):
    """Claim the next open review task (disputed first, then oldest) for the project's
    ``lease_seconds``; your own live claim is handed back first. ``review`` is null when none is open."""

    read_role = Role.REVIEWER
    write_role = Role.REVIEWER

    @extend_schema(request=None, responses={200: ReviewNextResponseSerializer})
    def post(self, request, project_id):
        result = services.review_next(project=self.project, user=request.user)
        review = selectors.review_payloads([result.review])[0] if result.review is not None else None
        return Response({"review": review, "open": result.open})


class ReviewDetail(APIView):
    """One review task with the item, every annotation with its annotator's quality, the
    aggregated posterior and the model's prediction (reviewers and admins of its project)."""

    @extend_schema(responses={200: ReviewOutSerializer})
    def get(self, request, review_id):
        task = selectors.review_for_user(request.user, review_id)
        return Response(selectors.review_payloads([task])[0])


class ReviewResolve(APIView):
    """Decide a review task: the label becomes the item's final label (source ``review``). The same
    decision sent again by the same reviewer answers 200 unchanged; 409 when already decided
    otherwise; 400 for an unknown label."""

    @extend_schema(request=ReviewResolveSerializer, responses={200: ReviewResponseSerializer})
    def post(self, request, review_id):
        task = selectors.review_for_user(request.user, review_id)
        data = _validated(ReviewResolveSerializer, request.data)
        resolved = services.review_resolve(review_id=task.pk, user=request.user, label=data["label"], note=data["note"])
        return Response({"review": selectors.review_payloads([resolved])[0]})


class ProjectAgreement(ProjectScopedMixin, APIView):
    """The project's latest agreement figures (reviewers and admins): project kappa, Fleiss' kappa,
    Krippendorff's alpha, the review policy in force, per-annotator quality and the pairwise kappa
    matrix. Nulls before the first aggregation. POST (admins) recomputes now."""

    read_role = Role.REVIEWER
    write_role = Role.ADMIN

    @extend_schema(responses={200: AgreementSerializer})
    def get(self, request, project_id):
        return Response(selectors.agreement_latest(self.project))

    @extend_schema(request=None, responses={200: AgreementSerializer})
    def post(self, request, project_id):
        services.project_aggregate(project=self.project)
        return Response(selectors.agreement_latest(self.project))


# --- export ------------------------------------------------------------------------------------


class ProjectExport(ProjectScopedMixin, APIView):
    """Every item of the project with its final label and its annotations, streamed (reviewers and
    admins): ``?format=jsonl`` (default, one JSON object per line) or ``?format=csv`` (``metadata``
    and ``annotations`` as compact JSON strings); ``?status=final`` for the items with a final label
    only. Records come in item id order: ``external_id, text, label, confidence, source, status,
    metadata, annotations`` (``[{annotator, label, created_at}]``)."""

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
        if errors:
            summary = "; ".join(f"{field}: {message}" for field, message in errors.items())
            raise ServiceError(
                {
                    "detail": f"invalid request: {summary}",
                    "errors": errors,
                    "allowed": {"format": list(export.FORMATS), "status": list(export.STATUS_FILTERS)},
                },
                code="invalid",
            )
        response = StreamingHttpResponse(
            export.stream(self.project, fmt, final_only=which == "final"), content_type=export.CONTENT_TYPES[fmt]
        )
        response["Content-Disposition"] = f'attachment; filename="project-{self.project.pk}-labels.{fmt}"'
        return response
