"""REST endpoints: thin views that check the caller's role, then call a selector or a service."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..errors import NotFound
from ..ingest_records import POSITION_KIND, validate_records
from ..models import IngestBatch, Item, LabelClass, Membership, Role
from .parsers import INGEST_PARSERS, ParsedPayload
from .serializers import (
    IngestBatchSerializer,
    IngestRecordSerializer,
    IngestReportSerializer,
    ItemSerializer,
    MembershipSerializer,
    MembershipWriteSerializer,
    ProjectDetailSerializer,
    ProjectSerializer,
    RoleSerializer,
    rejected_as_dicts,
)


class ProjectScopedMixin:
    """Resolves ``project_id`` from the URL for members only and checks the role a method needs."""

    read_role = Role.ANNOTATOR
    write_role = Role.ADMIN

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.project, self.role = selectors.project_for_user(request.user, kwargs["project_id"])
        needed = self.read_role if request.method in ("GET", "HEAD", "OPTIONS") else self.write_role
        if not selectors.has_role(self.role, needed):
            raise PermissionDenied(f"this needs the {needed} role in project {self.project.pk}; you are {self.role}")


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
