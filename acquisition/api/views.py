"""REST endpoints of the model side: scoring runs (list, detail, request one) and model versions.

Reviewers and admins read; admins request runs; non-members get 404 (as everywhere in the API).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from annotation.api.views import ProjectScopedMixin
from annotation.errors import Conflict
from annotation.models import Role

from .. import selectors, services
from ..models import ModelVersion, ScoringRun
from .serializers import ModelVersionSerializer, ScoringRunRequestSerializer, ScoringRunSerializer


class ScoringRunListCreate(ProjectScopedMixin, generics.ListAPIView):
    """The project's scoring runs, newest first; admins request a new one (202, or 409 while one is
    pending or running)."""

    read_role = Role.REVIEWER
    write_role = Role.ADMIN
    queryset = ScoringRun.objects.none()
    serializer_class = ScoringRunSerializer

    def get_queryset(self):
        return selectors.scoring_runs_for_project(self.project)

    @extend_schema(
        request=ScoringRunRequestSerializer,
        responses={
            202: ScoringRunSerializer,
            409: OpenApiResponse(description="a scoring run of this project is already pending or running"),
        },
    )
    def post(self, request, project_id):
        serializer = ScoringRunRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.scoring_request(project=self.project, trigger=serializer.validated_data["trigger"])
        if run is None:
            active = selectors.scoring_runs_for_project(self.project).filter(status__in=ScoringRun.ACTIVE).first()
            raise Conflict(
                {
                    "detail": "a scoring run of this project is already pending or running",
                    "active_run": active.pk if active else None,
                },
                code="scoring_run_active",
            )
        return Response(ScoringRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ScoringRunDetail(ProjectScopedMixin, generics.RetrieveAPIView):
    """One scoring run: status, progress (0..1), timings per phase and counts."""

    read_role = Role.REVIEWER
    queryset = ScoringRun.objects.none()
    serializer_class = ScoringRunSerializer
    lookup_url_kwarg = "run_id"

    def get_queryset(self):
        return selectors.scoring_runs_for_project(self.project)


class ModelVersionList(ProjectScopedMixin, generics.ListAPIView):
    """The project's trained model versions, newest first."""

    read_role = Role.REVIEWER
    queryset = ModelVersion.objects.none()
    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        return selectors.model_versions_for_project(self.project)
