"""Accounts: staff and project admins create annotators and reviewers; deleting an account keeps
its annotations.

``user_create`` makes an account with an initial password (checked by Django's password
validators) or with an invitation: the account has no usable password and ``invitation_path``
gives a one-time link (Django's password-reset token: it stops working once a password is set,
and after ``PASSWORD_RESET_TIMEOUT``) on which the invitee chooses one. With ``project`` the new
account becomes a member with ``role`` in the same transaction.

``user_deleting`` runs before an account is deleted (ORM, admin or API alike; connected in
``annotation.apps``): the user's live leases end and their slots return to the queue, and their
annotations keep the account's id as ``former_user_id`` (the foreign key is then set to null):
they stay counted for their items, one distinct worker for the aggregation, named
``deleted-user-<id>`` in exports and reviews.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from quorum.errors import ServiceError

from ..models import Annotation, Membership, Project, Role
from .leases import leases_release


@dataclass(frozen=True)
class CreatedUser:
    user: object
    membership: Membership | None
    invitation_path: str | None  # the one-time link's path (no password was given)


def _invalid(field: str, message: str, code: str = "invalid") -> ServiceError:
    return ServiceError({"detail": f"{field}: {message}", "errors": {field: message}}, code=code)


def invitation_path(user) -> str:
    """The path of a one-time link on which ``user`` sets a password."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("invite", kwargs={"uidb64": uid, "token": default_token_generator.make_token(user)})


def user_create(
    *,
    username: str,
    email: str,
    password: str | None = None,
    project: Project | int | None = None,
    role: str | None = None,
    allowed_roles: tuple[str, ...] = tuple(Role.values),
) -> CreatedUser:
    """Create an account (module docstring). Exactly one of ``password`` / invitation (``password``
    None). ``allowed_roles``: the roles the caller may give (project admins: annotator, reviewer)."""
    User = get_user_model()
    username = (username or "").strip()
    if not username:
        raise _invalid("username", "may not be blank")
    try:
        User.username_validator(username)
    except ValidationError as error:
        raise _invalid("username", " ".join(error.messages)) from None
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise _invalid("email", f"{email!r} is not a valid e-mail address") from None
    if role is not None and role not in allowed_roles:
        raise _invalid("role", f"must be one of {', '.join(allowed_roles)}, got {role!r}")
    if role is not None and project is None:
        raise _invalid("project", "a role needs the project to give it in")
    if project is not None and not isinstance(project, Project):
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise _invalid("project", f"no project with id {project}", code="unknown_project")
        project = found
    candidate = User(username=username, email=email)
    if password is not None:
        try:
            password_validation.validate_password(password, user=candidate)
        except ValidationError as error:
            raise _invalid("password", " ".join(error.messages), code="weak_password") from None
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise _invalid("username", f"{username!r} is already taken", code="duplicate_username")
        user = User.objects.create_user(username=username, email=email, password=password)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        membership = None
        if project is not None:
            membership = Membership.objects.create(project=project, user=user, role=role or Role.ANNOTATOR)
    return CreatedUser(user, membership, None if password is not None else invitation_path(user))


def user_deleting(user) -> None:
    """What goes before an account is deleted (module docstring)."""
    with transaction.atomic():
        leases_release(user=user, route=False)
        Annotation.all_revisions.filter(user=user).update(former_user_id=user.pk)


def api_token(user) -> str:
    """The account's API token, created on first use (one per account, as ``drf_create_token``)."""
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
