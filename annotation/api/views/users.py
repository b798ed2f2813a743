"""Accounts: staff create annotators, reviewers and admins; a project's admins create annotators and
reviewers for their project (``services.accounts``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from quorum.security import AuthFailureThrottle

from ... import selectors, services
from ...models import Project, Role
from ..serializers import UserCreatedSerializer, UserCreateSerializer
from .common import validated

PROJECT_ADMIN_ROLES = (Role.ANNOTATOR, Role.REVIEWER)


class UserCreate(APIView):
    """Create an account: ``username``, ``email`` and an initial ``password`` (Django's password
    validators apply), or no password for a one-time ``invitation_url`` on which the invitee sets
    one. ``project`` (and ``role``, default annotator) adds the account to a project in the same
    step. Staff may give any role in any project; a project's admins may create annotators and
    reviewers of that project only; everyone else gets a 403."""

    @extend_schema(request=UserCreateSerializer, responses={201: UserCreatedSerializer})
    def post(self, request):
        data = validated(UserCreateSerializer, request.data)
        allowed = tuple(Role.values)
        if not request.user.is_staff:
            project = Project.objects.filter(pk=data.get("project")).first() if "project" in data else None
            role = selectors.role_in_project(request.user, project) if project is not None else None
            if role != Role.ADMIN:
                raise PermissionDenied("creating accounts needs staff status, or the admin role in the given project")
            allowed = PROJECT_ADMIN_ROLES
        created = services.user_create(
            username=data["username"],
            email=data["email"],
            password=data.get("password"),
            project=data.get("project"),
            role=data.get("role"),
            allowed_roles=allowed,
        )
        membership = created.membership
        body = {
            "id": created.user.pk,
            "username": created.user.get_username(),
            "email": created.user.email,
            "project": membership.project_id if membership else None,
            "role": membership.role if membership else None,
            "invitation_url": request.build_absolute_uri(created.invitation_path) if created.invitation_path else None,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class TokenObtain(APIView):
    """Exchange a ``username`` and ``password`` for the account's API token (created on first use),
    so that scripts and annotator clients need no shell access to the server. Wrong credentials get
    a 400; they count against the client address like failed token authentications, and past
    ``QUORUM_AUTH_FAILURE_RATE`` the address gets a 429 with ``Retry-After``."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=AuthTokenSerializer,
        responses={200: inline_serializer("ApiToken", {"token": serializers.CharField()})},
    )
    def post(self, request):
        throttle = AuthFailureThrottle()
        wait = throttle.wait_if_over(request)
        if wait is not None:
            raise Throttled(wait=wait, detail="too many failed sign-ins from this address; try again later")
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            throttle.allow_request(request, None)  # records this failure
            raise ValidationError(serializer.errors)
        return Response({"token": services.api_token(serializer.validated_data["user"])})
