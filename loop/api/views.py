"""REST endpoints of the loop: scoring runs (list, detail, request one) and model versions.

Reviewers and admins read; admins request runs; non-members get 404 (as everywhere in the API).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.http import FileResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import Throttled
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from acquisition import selectors
from acquisition.models import ModelVersion, ScoringRun, TrainingJob
from acquisition.services.jobs import lost_jobs
from annotation.models import Role
from quorum.errors import Conflict, NotFound, ServiceError
from quorum.web import DownloadNegotiation, ProjectScopedMixin

from ..dashboard import active_jobs
from ..services.scoring import scoring_request
from ..services.training import manual_training_check, model_rollback, training_job_request
from .serializers import (
    LOOP_TRIGGERS,
    ActiveJobsSerializer,
    ModelVersionSerializer,
    ScoringRunRequestSerializer,
    ScoringRunSerializer,
    TrainingJobSerializer,
    TrainingStatusSerializer,
)


def _already_active(jobs, what: str, key: str) -> Conflict:
    """409 for a request while the project's one pending-or-running job of this kind exists (``jobs``:
    the project's scoring runs or training jobs), naming it under ``key``."""
    active = jobs.filter(status__in=jobs.model.ACTIVE).first()
    return Conflict(
        {"detail": f"a {what} of this project is already pending or running", key: active.pk if active else None},
        code=f"{what.replace(' ', '_')}_active",
    )


HOUR = timedelta(hours=1)


def hourly_limit(requested, limit: int, what: str, setting: str) -> None:
    """429 with ``Retry-After`` when ``requested`` (this project's requested runs or jobs) already holds
    ``limit`` created in the last hour; the wait is until the oldest of them is an hour old."""
    since = timezone.now() - HOUR
    recent = list(
        requested.filter(created_at__gt=since).order_by("-created_at").values_list("created_at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return
    wait = max(1, int((recent[-1] + HOUR - timezone.now()).total_seconds()) + 1) if recent else 3600
    raise Throttled(
        wait=wait,
        detail=f"this project already had {limit} {what} requested in the last hour ({setting})",
    )


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
            429: OpenApiResponse(description="QUORUM_SCORING_REQUESTS_PER_HOUR reached; see Retry-After"),
        },
    )
    def post(self, request, project_id):
        serializer = ScoringRunRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        runs = selectors.scoring_runs_for_project(self.project)
        lost = lost_jobs(ScoringRun, stale_seconds=settings.QUORUM_SCORING_STALE_SECONDS, project=self.project)
        if runs.filter(status__in=ScoringRun.ACTIVE).exclude(pk__in=lost.values("pk")).exists():
            raise _already_active(runs, "scoring run", "active_run")
        hourly_limit(
            runs.exclude(trigger__in=LOOP_TRIGGERS),
            settings.QUORUM_SCORING_REQUESTS_PER_HOUR,
            "scoring runs",
            "QUORUM_SCORING_REQUESTS_PER_HOUR",
        )
        run = scoring_request(project=self.project, trigger=serializer.validated_data["trigger"])
        if run is None:
            raise _already_active(selectors.scoring_runs_for_project(self.project), "scoring run", "active_run")
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
    """The project's trained model versions, newest first, with lineage, metrics and the gate's decision."""

    read_role = Role.REVIEWER
    queryset = ModelVersion.objects.none()
    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        return selectors.model_versions_for_project(self.project)


class ModelVersionDetail(ProjectScopedMixin, generics.RetrieveAPIView):
    """One model version (by its number within the project)."""

    read_role = Role.REVIEWER
    queryset = ModelVersion.objects.none()
    serializer_class = ModelVersionSerializer
    lookup_field = "version"
    lookup_url_kwarg = "version"

    def get_queryset(self):
        return selectors.model_versions_for_project(self.project)


class ModelVersionPromote(ProjectScopedMixin, generics.GenericAPIView):
    """Admins: make this version the current model (a roll back, or overruling the gate); the pool is
    then re-scored with it. 409 for a version that failed or is still training."""

    read_role = Role.ADMIN
    write_role = Role.ADMIN
    queryset = ModelVersion.objects.none()
    serializer_class = ModelVersionSerializer

    @extend_schema(
        request=None, responses={200: ModelVersionSerializer, 409: OpenApiResponse(description="not promotable")}
    )
    def post(self, request, project_id, version):
        promoted = model_rollback(project=self.project, version_number=version, user=request.user)
        return Response(ModelVersionSerializer(promoted).data)


class TrainingJobListCreate(ProjectScopedMixin, generics.ListAPIView):
    """The project's training jobs (train → evaluate → gate → re-score), newest first; admins ask for one
    now ("train now": 202, or 409 while one is pending or running, or when no final label landed since
    the newest model version)."""

    read_role = Role.REVIEWER
    write_role = Role.ADMIN
    queryset = TrainingJob.objects.none()
    serializer_class = TrainingJobSerializer

    def get_queryset(self):
        return selectors.training_jobs_for_project(self.project)

    @extend_schema(
        request=None,
        responses={
            202: TrainingJobSerializer,
            409: OpenApiResponse(
                description="a job is already pending or running (code training_job_active), or no final label "
                "landed since the newest model version (code no_new_labels: it would train an identical one)"
            ),
            429: OpenApiResponse(description="QUORUM_TRAINING_REQUESTS_PER_HOUR reached; see Retry-After"),
        },
    )
    def post(self, request, project_id):
        if not selectors.final_label_count(self.project):
            raise ServiceError("the project has no final labels yet: nothing to train on", code="no_labels")
        jobs = selectors.training_jobs_for_project(self.project)
        lost = lost_jobs(TrainingJob, stale_seconds=settings.QUORUM_TRAINING_STALE_SECONDS, project=self.project)
        if jobs.filter(status__in=TrainingJob.ACTIVE).exclude(pk__in=lost.values("pk")).exists():
            raise _already_active(jobs, "training job", "active_job")
        manual_training_check(project=self.project)
        hourly_limit(
            jobs.filter(trigger="manual"),
            settings.QUORUM_TRAINING_REQUESTS_PER_HOUR,
            "training jobs",
            "QUORUM_TRAINING_REQUESTS_PER_HOUR",
        )
        job = training_job_request(project=self.project, trigger="manual", user=request.user)
        if job is None:
            raise _already_active(selectors.training_jobs_for_project(self.project), "training job", "active_job")
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class TrainingJobDetail(ProjectScopedMixin, generics.RetrieveAPIView):
    """One training job: status, stage, progress (0..1), timings per stage, outcome."""

    read_role = Role.REVIEWER
    queryset = TrainingJob.objects.none()
    serializer_class = TrainingJobSerializer
    lookup_url_kwarg = "job_id"

    def get_queryset(self):
        return selectors.training_jobs_for_project(self.project)


class TrainingStatus(ProjectScopedMixin, generics.GenericAPIView):
    """Where the retrain trigger stands: new final labels since the newest model, the threshold, the
    current version and the active job."""

    read_role = Role.REVIEWER
    queryset = TrainingJob.objects.none()
    serializer_class = TrainingStatusSerializer

    def get(self, request, project_id):
        return Response(TrainingStatusSerializer(selectors.training_status(self.project)).data)


class ModelVersionWeights(ProjectScopedMixin, APIView):
    """Admins: the stored weights of a model version (a PyTorch state file), as an attachment named
    ``project-<id>-v<version>.pt``. 404 when the version does not exist or has no stored weights."""

    read_role = Role.ADMIN
    renderer_classes = [JSONRenderer]
    content_negotiation_class = DownloadNegotiation

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="no such model version, or it has no stored weights"),
        }
    )
    def get(self, request, project_id, version):
        model = ModelVersion.objects.filter(project=self.project, version=version).first()
        if model is None:
            raise NotFound(f"project {self.project.pk} has no model version {version}", code="not_found")
        missing = NotFound(
            f"model version {version} of project {self.project.pk} has no stored weights", code="no_weights"
        )
        if not model.weights:
            raise missing
        try:
            handle = model.weights.storage.open(model.weights.name, "rb")
        except FileNotFoundError:
            raise missing from None
        return FileResponse(
            handle,
            as_attachment=True,
            filename=f"project-{self.project.pk}-v{model.version}.pt",
            content_type="application/octet-stream",
        )


class ProjectJobs(ProjectScopedMixin, generics.GenericAPIView):
    """What is running for the project now (ingests, embedding, scoring runs, training jobs), each with
    a progress in 0..1: what the dashboard's live progress bars poll."""

    read_role = Role.REVIEWER
    queryset = TrainingJob.objects.none()
    serializer_class = ActiveJobsSerializer

    def get(self, request, project_id):
        return Response(ActiveJobsSerializer({"jobs": active_jobs(self.project)}).data)
