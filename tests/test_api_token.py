"""POST /api/v1/auth/token: a password for the account's API token, failures rate-limited per address."""

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from rest_framework.test import APIClient

URL = "/api/v1/auth/token"


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_password_for_a_token_that_then_authenticates():
    User.objects.create_user("ann", "ann@example.org", "a-Long-passw0rd")
    client = APIClient()
    response = client.post(URL, {"username": "ann", "password": "a-Long-passw0rd"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    again = client.post(URL, {"username": "ann", "password": "a-Long-passw0rd"}, format="json").json()["token"]
    assert again == token  # one token per account
    authed = APIClient()
    authed.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert authed.get("/api/v1/projects").status_code == 200


@pytest.mark.django_db
def test_wrong_password_is_a_400_and_repeated_failures_a_429(settings):
    User.objects.create_user("ann", "ann@example.org", "a-Long-passw0rd")
    client = APIClient()
    response = client.post(URL, {"username": "ann", "password": "wrong"}, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in str(response.json()) or "Unable to log in" in str(response.json())
    missing = client.post(URL, {"username": "ann"}, format="json")
    assert missing.status_code == 400 and "password" in str(missing.json())
    statuses = [
        client.post(URL, {"username": "ann", "password": "wrong"}, format="json").status_code for _ in range(30)
    ]
    assert 429 in statuses
    locked = client.post(URL, {"username": "ann", "password": "a-Long-passw0rd"}, format="json")
    assert locked.status_code == 429 and locked.has_header("Retry-After")
