"""The annotator's queue: the next item (a lease), a label on it, skip; the labels given: list, change, undo."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from quorum.web import ProjectScopedMixin, StrictCursorPagination, query_int

from ... import selectors, services
from ...models import Annotation
from ...services.quality import is_paused
from ..serializers import (
    AnnotationChangeSerializer,
    AnnotationListSerializer,
    AnnotationResponseSerializer,
    AnnotationSubmitSerializer,
    AssignmentResponseSerializer,
    NextRequestSerializer,
    NextResponseSerializer,
    SkipSerializer,
    annotation_payload,
    assignment_payload,
    suggestion_payload,
)
from .common import require_member, require_role, validated


class NextAssignment(APIView):
    """Lease the next item of the project to you (or hand back a lease you have not shown yet).

    ``held`` lists the assignment ids the client already shows (current + prefetched); at most
    two live leases per annotator. ``code`` says why ``assignment`` is null: ``queue_empty`` (see
    ``progress.refill_running``), ``lease_limit``, or ``paused`` (quality control paused you on the
    project; ``message`` says why, and a project admin can reinstate you). ``suggestion`` only with ``"suggest": true``.
    """

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Any member may annotate; project and role come in one query (the hot path).
        self.project, self.role = selectors.project_with_role(request.user, kwargs["project_id"])

    @extend_schema(request=NextRequestSerializer, responses={200: NextResponseSerializer})
    def post(self, request, project_id):
        data = validated(NextRequestSerializer, request.data)
        result = services.assignment_next(project=self.project, user=request.user, held=data["held"])
        body = {
            "assignment": None if result.assignment is None else assignment_payload(result.assignment, result.entry),
            "suggestion": suggestion_payload(result.entry) if data["suggest"] and result.assignment else None,
            "progress": result.progress or selectors.annotator_progress(self.project, request.user),
            "code": result.code,
        }
        if result.message is not None:
            body["message"] = result.message
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
        require_role(role, assignment.project)
        data = validated(AnnotationSubmitSerializer, request.data)
        result = services.annotation_submit(
            assignment_id=assignment.pk,
            user=request.user,
            label=data.get("label"),
            labels=data.get("labels"),
            time_spent_ms=data["time_spent_ms"],
        )
        paused = is_paused(assignment.project, request.user)  # this answer may have paused them
        body = {
            "annotation": annotation_payload(result.annotation, username=request.user.get_username()),
            "progress": selectors.annotator_progress(assignment.project, request.user),
            "paused": (paused.pause_reason or "you are paused on this project") if paused else None,
        }
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class AssignmentSkip(APIView):
    """Give an item back (optional reason): others get its slot; you never get it again."""

    @extend_schema(request=SkipSerializer, responses={200: AssignmentResponseSerializer})
    def post(self, request, assignment_id):
        assignment, role = selectors.assignment_for_member(request.user, assignment_id)
        require_role(role, assignment.project)
        data = validated(SkipSerializer, request.data)
        skipped = services.assignment_skip(assignment_id=assignment.pk, user=request.user, reason=data["reason"])
        skipped.item = assignment.item
        body = {
            "assignment": assignment_payload(skipped, services.served_entry(assignment.project, assignment.item)),
            "progress": selectors.annotator_progress(assignment.project, request.user),
        }
        return Response(body)


class AnnotationCursorPagination(StrictCursorPagination):
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
            OpenApiParameter("item", {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}, description="item id"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        queryset = selectors.annotations_visible(
            self.project, self.request.user, self.role, username=self.request.query_params.get("user")
        )
        item = query_int(self.request, "item")
        if item is not None:
            queryset = queryset.filter(item_id=item)
        return queryset


class AnnotationDetail(APIView):
    """One of your annotations; PATCH changes its label while the item is neither final nor in review."""

    @extend_schema(responses={200: AnnotationResponseSerializer})
    def get(self, request, annotation_id):
        annotation = selectors.annotation_for_user(request.user, annotation_id)
        require_member(request.user, annotation.project)
        return Response({"annotation": annotation_payload(annotation, username=request.user.get_username())})

    @extend_schema(request=AnnotationChangeSerializer, responses={200: AnnotationResponseSerializer})
    def patch(self, request, annotation_id):
        annotation = selectors.annotation_for_user(request.user, annotation_id)
        require_member(request.user, annotation.project)
        data = validated(AnnotationChangeSerializer, request.data)
        changed = services.annotation_change(
            annotation_id=annotation.pk, user=request.user, label=data.get("label"), labels=data.get("labels")
        )
        return Response({"annotation": annotation_payload(changed, username=request.user.get_username())})


class AnnotationUndo(APIView):
    """Take your label back while the item is open: the item is leased to you again and returned
    (the same shape as ``next``), so the page can show it."""

    @extend_schema(request=None, responses={200: AssignmentResponseSerializer})
    def post(self, request, annotation_id):
        annotation = selectors.annotation_for_user(request.user, annotation_id)
        require_member(request.user, annotation.project)
        assignment = services.annotation_undo(annotation_id=annotation.pk, user=request.user)
        body = {
            "assignment": assignment_payload(assignment, services.served_entry(annotation.project, assignment.item)),
            "progress": selectors.annotator_progress(annotation.project, request.user),
        }
        return Response(body)
