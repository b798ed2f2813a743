"""Expert review (the open and resolved review tasks, the next one, a decision) and the agreement figures."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from quorum.web import ProjectScopedMixin, StrictCursorPagination

from ... import selectors, services
from ...models import ReviewTask, Role
from ..serializers import (
    AgreementSerializer,
    ReviewNextResponseSerializer,
    ReviewOutSerializer,
    ReviewResolveSerializer,
    ReviewResponseSerializer,
)
from .common import validated


class ReviewCursorPagination(StrictCursorPagination):
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
    """Decide a review task: the label becomes the item's final label (source ``review``); on a
    multi-label project the tag set ``labels`` becomes the item's final tag set. The same decision
    sent again by the same reviewer answers 200 unchanged; 409 when already decided otherwise; 400
    for an unknown label, or for the answer field the project does not take (``label`` on a
    multi-label project, ``labels`` on a single-label one), naming the field."""

    @extend_schema(request=ReviewResolveSerializer, responses={200: ReviewResponseSerializer})
    def post(self, request, review_id):
        task = selectors.review_for_user(request.user, review_id)
        data = validated(ReviewResolveSerializer, request.data)
        resolved = services.review_resolve(
            review_id=task.pk, user=request.user, label=data.get("label"), labels=data.get("labels"), note=data["note"]
        )
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
