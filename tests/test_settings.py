"""Configuration from the environment: safe defaults, and no silent insecure production."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
}


def load_settings(tmp_path, **env) -> subprocess.CompletedProcess:
    code = (
        "import django, json; from django.conf import settings; django.setup();"
        "print(json.dumps({'debug': settings.DEBUG, 'engine': settings.DATABASES['default']['ENGINE'],"
        "'db': str(settings.DATABASES['default']['NAME']), 'broker': settings.CELERY_BROKER_URL,"
        "'hosts': settings.ALLOWED_HOSTS, 'secure': settings.SESSION_COOKIE_SECURE,"
        "'routes': settings.CELERY_TASK_ROUTES}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**CLEAN, "DJANGO_SETTINGS_MODULE": "quorum.settings", "QUORUM_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
    )


def test_production_without_secret_key_refuses_to_start(tmp_path):
    result = load_settings(tmp_path, DEBUG="0", ALLOWED_HOSTS="example.com")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_without_allowed_hosts_refuses_to_start(tmp_path):
    result = load_settings(tmp_path, DEBUG="0", SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is not set" in result.stderr


def test_unparseable_boolean_is_an_error_not_a_guess(tmp_path):
    result = load_settings(tmp_path, DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_embedded_defaults_need_no_server(tmp_path):
    import json

    result = load_settings(tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["db"] == str(tmp_path / "quorum.sqlite3")
    assert config["broker"].startswith("filesystem://")
    assert (tmp_path / "broker" / "queue").is_dir()
    assert config["hosts"] == ["localhost", "127.0.0.1", "[::1]"]
    assert config["secure"] is False
    assert config["routes"]["acquisition.tasks.items_embed"] == {"queue": "gpu"}


def test_production_configuration_from_environment(tmp_path):
    import json

    result = load_settings(
        tmp_path,
        DEBUG="false",
        SECRET_KEY="s" * 50,
        ALLOWED_HOSTS="quorum.example.com, api.example.com",
        DATABASE_URL="postgres://u:p@db.internal:5432/quorum",
        CELERY_BROKER_URL="redis://redis.internal:6379/1",
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["debug"] is False
    assert config["engine"] == "django.db.backends.postgresql"
    assert config["db"] == "quorum"
    assert config["broker"] == "redis://redis.internal:6379/1"
    assert config["hosts"] == ["quorum.example.com", "api.example.com"]
    assert config["secure"] is True


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_bad_integer_setting_names_the_variable(tmp_path, value):
    result = load_settings(tmp_path, DEBUG="1", QUORUM_INGEST_MAX_BYTES=value)
    assert result.returncode != 0
    assert "QUORUM_INGEST_MAX_BYTES" in result.stderr
