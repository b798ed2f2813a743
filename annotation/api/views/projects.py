"""Projects: list and create (any signed-in user creates; members see theirs), read, change, delete."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from quorum.web import ProjectScopedMixin

from ... import selectors, services
from ...models import LabelClass, Role
from ..serializers import (
    ProjectDetailSerializer,
    ProjectSerializer,
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
        """Delete the project with everything under it (admins); its files go once that commits."""
        services.project_delete(project=self.project)
        return Response(status=status.HTTP_204_NO_CONTENT)
