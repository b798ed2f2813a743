"""Security plumbing shared by the pages and the API; imports none of the apps.

- ``LoginThrottleBackend``: django-axes' lockout check of the sign-in forms (login page, admin):
  too many failed sign-ins of one username from one address lock that pair out for a while.
- ``ThrottledTokenAuthentication``: DRF's token authentication whose failures are rate-limited per
  client address (scope ``auth_failure`` of ``DEFAULT_THROTTLE_RATES``): past the rate, a 429 with
  ``Retry-After`` instead of trying one more token.
- ``nul_free`` / ``find_unsafe_text``: the NUL check of request bodies (PostgreSQL cannot store NUL
  in text or JSON; lone surrogates cannot be encoded at all).
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.shortcuts import render
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.throttling import SimpleRateThrottle


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check for sign-ins that come with a request (the login page, the admin). A
    check of credentials without a request (a script, a management command) is no web sign-in and
    is left to the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_response(request, original_response=None, credentials=None):
    """The page a locked-out sign-in gets (429): why, and for how long."""
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": round(settings.AXES_COOLOFF_TIME * 60),
    }
    return render(request, "registration/locked_out.html", context, status=429)


class AuthFailureThrottle(SimpleRateThrottle):
    """Failed token authentications per client address."""

    scope = "auth_failure"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def wait_if_over(self, request) -> float | None:
        """Seconds to wait when the address is already over the rate (records nothing), else None."""
        if self.rate is None:
            return None
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [moment for moment in self.cache.get(self.key, []) if moment > self.now - self.duration]
        return self.wait() if len(self.history) >= self.num_requests else None


class ThrottledTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        if not request.META.get("HTTP_AUTHORIZATION", "").split(" ", 1)[0].lower() == self.keyword.lower():
            return None
        throttle = AuthFailureThrottle()
        wait = throttle.wait_if_over(request)
        if wait is not None:
            raise exceptions.Throttled(
                wait=wait, detail="too many failed token authentications from this address; try again later"
            )
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle.allow_request(request, None)  # records this failure
            raise


NUL = "\x00"


def _unsafe(text: str) -> str | None:
    if NUL in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def find_unsafe_text(value, where: str = "") -> tuple[str, str] | None:
    """(path, reason) of the first string in a parsed JSON value (keys included) holding a NUL or a
    lone surrogate, or None. ``path`` is like ``labels[0].name``."""
    stack = [(where, value)]
    while stack:
        path, current = stack.pop()
        if isinstance(current, str):
            reason = _unsafe(current)
            if reason:
                return path or "body", reason
        elif isinstance(current, dict):
            for key, item in current.items():
                key_text = str(key)
                reason = _unsafe(key_text)
                child = f"{path}.{key_text}" if path else key_text
                if reason:
                    return (path or "body"), f"a key {reason}"
                stack.append((child, item))
        elif isinstance(current, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(current))
    return None


def nul_free(value: str) -> None:
    """A DRF/Django validator: refuses text holding a NUL character or a lone surrogate."""
    reason = _unsafe(value) if isinstance(value, str) else None
    if reason:
        raise exceptions.ValidationError(reason)
