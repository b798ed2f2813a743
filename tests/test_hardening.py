"""Hostile and impossible input: NUL characters and non-ASCII digits are 400s naming the field,
projects that could never work are refused, the loop's requests are limited, sign-ins and token
failures are throttled, and the security headers and the schema tell the truth."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from acquisition import encoders
from acquisition.models import ScoringRun, TrainingJob
from acquisition.services import scoring as compute
from annotation import services
from annotation.models import Item, Project, QueueEntry, Role
from loop import supply
from loop.services import scoring
from quorum import security, vocabulary
from tests.test_settings import CLEAN, ROOT

PROJECTS = "/api/v1/projects"


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def errors_of(response) -> dict:
    body = response.json()
    return body.get("errors", body)


# ------------------------------------------------------------------------------------------ NUL
def test_a_nul_in_a_label_name_is_a_400_naming_the_label(admin_api):
    response = admin_api.post(PROJECTS, {"name": "P", "labels": ["ok", "bad\x00name"]}, format="json")
    assert response.status_code == 400, response.content
    assert "labels[1]" in errors_of(response)
    assert "NUL" in response.json()["detail"]
    assert not Project.objects.filter(name="P").exists()


def test_a_nul_in_a_label_object_sent_as_a_form_is_a_400(admin_api):
    field = security.find_unsafe_text({"labels": [{"name": "a"}, {"name": "x", "description": "d\x00"}]})
    assert field == ("labels[1].description", "contains a NUL character")
    response = admin_api.post(PROJECTS, {"name": "P", "labels": "bad\x00"}, format="multipart")
    assert response.status_code == 400
    assert "labels" in response.json()


def test_a_nul_in_a_query_parameter_is_a_400_naming_it(admin_api, project):
    response = admin_api.get(f"/api/v1/projects/{project.pk}/annotations", {"user": "bob\x00"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"user": "contains a NUL character"}


def test_a_nul_in_a_path_parameter_is_a_400(admin_api, project):
    response = admin_api.get(f"/api/v1/projects/{project.pk}/members/bob%00")
    assert response.status_code == 400
    assert "path" in response.json()["errors"]
    page = Client().get("/accounts/login/?next=%00")
    assert page.status_code == 400


@pytest.mark.parametrize("value", ["²", "٣", "1e3", "-1", "99999999999999999999"])
def test_the_item_filter_takes_ascii_digits_only(admin_api, project, value):
    response = admin_api.get(f"/api/v1/projects/{project.pk}/annotations", {"item": value})
    assert response.status_code == 400
    assert "item" in response.json()["errors"]


def test_next_with_an_out_of_range_held_id_is_a_400(admin_api, project):
    response = admin_api.post(f"/api/v1/projects/{project.pk}/next", {"held": [2**70]}, format="json")
    assert response.status_code == 400
    assert "held" in response.json()["errors"]


# ------------------------------------------------------------------------------ impossible projects
@pytest.mark.parametrize(
    "extra, field",
    [
        ({"encoder": "/etc"}, "encoder"),
        ({"encoder": "my/encoder", "embedding_dim": 8}, "encoder"),
        ({"encoder": "hashing:0"}, "encoder"),
        ({"encoder": "hashing:99999999"}, "encoder"),
        ({"encoder": "sentence-transformers/all-MiniLM-L6-v2", "embedding_dim": 8}, "embedding_dim"),
        ({"encoder": "hashing:64", "embedding_dim": 32}, "embedding_dim"),
        ({"embedding_dim": 10**9}, "embedding_dim"),
        ({"embedding_dim": 8}, "embedding_dim"),  # the default encoder makes 384-d vectors
    ],
)
def test_a_project_that_could_never_embed_is_refused(admin_api, extra, field):
    response = admin_api.post(PROJECTS, {"name": "Impossible", "labels": ["a"], **extra}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Project.objects.filter(name="Impossible").exists()


def test_the_embedding_dim_follows_the_encoder(admin_api, settings):
    response = admin_api.post(PROJECTS, {"name": "H", "labels": ["a"], "encoder": "hashing:64"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["embedding_dim"] == 64
    settings.QUORUM_EXTRA_ENCODERS = {**settings.QUORUM_EXTRA_ENCODERS, "/models/e5": 768}
    response = admin_api.post(PROJECTS, {"name": "E", "labels": ["a"], "encoder": "/models/e5"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["embedding_dim"] == 768


def test_the_encoder_registry_matches_the_encoders_the_model_side_builds():
    assert set(vocabulary.KNOWN_ENCODERS) == set(encoders.MINILM_NAMES)
    assert vocabulary.MAX_HASHING_DIM == encoders._MAX_HASHING_DIM


def test_a_scoring_run_with_nothing_to_score_keeps_the_queue(project, make_user, api_for):
    Item.objects.bulk_create(
        [Item(project=project, external_id=f"t{i}", text=f"text {i}", text_hash=str(i)) for i in range(5)]
    )
    services.queue_fallback_fill(project=project)
    before = QueueEntry.objects.filter(project=project).count()
    assert before > 0
    run = compute.scoring_run_create(project=project, trigger="manual")
    scoring.scoring_run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.SUCCEEDED and run.selected == 0
    assert QueueEntry.objects.filter(project=project).count() == before
    assert not supply.ScoringSupply().started(project)  # item order stays in charge


# -------------------------------------------------------------------------------- request limits
def test_scoring_run_requests_are_limited_per_hour(admin_api, project, settings):
    settings.QUORUM_SCORING_REQUESTS_PER_HOUR = 2
    url = f"/api/v1/projects/{project.pk}/scoring-runs"
    for _ in range(2):
        response = admin_api.post(url, {}, format="json")
        assert response.status_code == 202, response.content
        assert admin_api.post(url, {}, format="json").status_code == 409  # one active at a time
        ScoringRun.objects.filter(pk=response.json()["id"]).update(status=ScoringRun.Status.SUCCEEDED)
    ScoringRun.objects.create(project=project, trigger="ingest", status=ScoringRun.Status.SUCCEEDED)
    limited = admin_api.post(url, {}, format="json")
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 3600
    assert "QUORUM_SCORING_REQUESTS_PER_HOUR" in limited.json()["detail"]


def test_a_request_cannot_claim_a_loop_trigger(admin_api, project):
    response = admin_api.post(f"/api/v1/projects/{project.pk}/scoring-runs", {"trigger": "ingest"}, format="json")
    assert response.status_code == 400
    assert "trigger" in response.json()


def test_training_job_requests_are_limited_per_hour(admin_api, project, settings):
    settings.QUORUM_TRAINING_REQUESTS_PER_HOUR = 1
    admin_api.post(
        f"/api/v1/projects/{project.pk}/items",
        [{"external_id": "g1", "text": "gold", "label": "refund"}],
        format="json",
    )
    url = f"/api/v1/projects/{project.pk}/training-jobs"
    first = admin_api.post(url)
    assert first.status_code == 202, first.content
    TrainingJob.objects.filter(pk=first.json()["id"]).update(status=TrainingJob.Status.SUCCEEDED)
    limited = admin_api.post(url)
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0


# ------------------------------------------------------------------------------- sign-in throttling
@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_repeated_failed_sign_ins_lock_the_username_out(make_user, settings, login_url):
    settings.AXES_FAILURE_LIMIT = 3
    make_user("carol", staff=True, password="right-password-1")
    client = Client()
    for _ in range(2):
        assert client.post(login_url, {"username": "carol", "password": "wrong"}).status_code == 200
    locked = client.post(login_url, {"username": "carol", "password": "wrong"})
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    again = client.post(login_url, {"username": "carol", "password": "right-password-1"})
    assert again.status_code == 429  # even the right password, until the lock-out ends
    assert Client().post(login_url, {"username": "other", "password": "x"}).status_code == 200


def test_a_script_checking_credentials_without_a_request_still_works(make_user):
    make_user("dave", password="right-password-1")
    assert authenticate(username="dave", password="right-password-1") is not None


def test_failed_token_authentications_are_rate_limited(project, monkeypatch, make_user, token_api):
    monkeypatch.setattr(security.AuthFailureThrottle, "THROTTLE_RATES", {"auth_failure": "3/min"})
    client = Client()
    for _ in range(3):
        assert client.get(PROJECTS, HTTP_AUTHORIZATION="Token wrong").status_code == 401
    throttled = client.get(PROJECTS, HTTP_AUTHORIZATION="Token wrong")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0


# --------------------------------------------------------------------------------- headers, logs
def test_pages_carry_a_content_security_policy(client_for, admin_user):
    response = client_for(admin_user).get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy


def test_a_refused_page_logs_one_line_without_a_traceback(client_for, make_user, project, member):
    annotator = member("ann")
    handler = next(
        h for h in logging.getLogger().handlers if any(type(f).__name__ == "QuietClientErrors" for f in h.filters)
    )
    stream, previous = io.StringIO(), handler.stream
    handler.setStream(stream)
    try:
        response = client_for(annotator).get(reverse("models", args=[project.pk]))
    finally:
        handler.setStream(previous)
    assert response.status_code == 403
    assert "Forbidden" in stream.getvalue()
    assert "Traceback" not in stream.getvalue()


def test_tls_switch_turns_on_hsts_redirect_and_secure_cookies(tmp_path):
    code = (
        "import django, json; from django.conf import settings; django.setup();"
        "print(json.dumps([settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS,"
        " settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE]))"
    )
    env = {**CLEAN, "DJANGO_SETTINGS_MODULE": "quorum.settings", "QUORUM_DATA_DIR": str(tmp_path)}
    env.update(DEBUG="1", QUORUM_TLS="1")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [True, 31536000, True, True]


# ------------------------------------------------------------------------------------------ schema
def test_every_operation_documents_its_errors(admin_api):
    schema = admin_api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "Error" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("400", "401", "403", "404", "429"):
                assert status in operation["responses"], (method, path, status)
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}
            if method in ("post", "patch", "delete"):
                assert "409" in operation["responses"], (method, path)


def test_roles_are_checked_before_limits(api_for, member, project):
    reviewer = member("rev", Role.REVIEWER)
    assert api_for(reviewer).post(f"/api/v1/projects/{project.pk}/scoring-runs", {}, format="json").status_code == 403


@pytest.mark.parametrize("value", ["null", "0", "²", "5000"])
def test_a_bad_page_size_is_a_400(admin_api, project, value):
    response = admin_api.get(f"/api/v1/projects/{project.pk}/items", {"page_size": value})
    assert response.status_code == 400
    assert "page_size" in response.json()["errors"]


def test_an_undeclared_method_is_a_405_before_the_project_is_looked_up(admin_api):
    response = admin_api.generic("TRACE", "/api/v1/projects/999999/scoring-runs/1")
    assert response.status_code == 405


def test_the_schema_promises_json_bodies_and_known_encoders(admin_api):
    schema = admin_api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    body = schema["paths"]["/api/v1/projects/{project_id}/next"]["post"]["requestBody"]["content"]
    assert list(body) == ["application/json"]
    request = schema["components"]["schemas"]["ProjectRequest"]["properties"]
    assert "embedding_dim" not in request
    assert {"enum": sorted(vocabulary.KNOWN_ENCODERS)} in request["encoder"]["anyOf"]
