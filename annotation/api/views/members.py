"""Members of a project and their roles (admins manage them)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from quorum.errors import NotFound
from quorum.web import ProjectScopedMixin

from ... import services
from ...models import Membership, Role
from ..serializers import (
    MembershipSerializer,
    MembershipWriteSerializer,
    RoleSerializer,
)


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


class MemberReinstate(ProjectScopedMixin, APIView):
    """Lift a member's pause (admins): quality control paused them when their honeypot accuracy
    fell under the project's minimum. Only honeypot answers given after the reinstatement count
    from then on. Reinstating a member who is not paused changes nothing."""

    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(request=None, responses=MembershipSerializer)
    def post(self, request, project_id, username):
        membership = services.membership_reinstate(project=self.project, username=username)
        return Response(MembershipSerializer(membership).data)
