"""Benchmark the bulk import of the open-source peer Label Studio on this machine.

Used by ``bench/ingest.py`` to measure Label Studio's import next to Quorum's own
ingest in the same run.  Dependencies: the standard library and ``requests``.

What it does
------------
* :func:`ensure_venv` creates a *separate* virtualenv (Label Studio pins Django
  5.2, DRF, pandas, pyarrow, ... which must not leak into Quorum's environment)
  and ``pip install label-studio`` into it.  The dependency tree of
  label-studio 1.23.x has no torch/CUDA/TensorFlow; the heaviest wheels are
  pyarrow, opencv-python-headless, grpcio, pandas and numpy (158 packages; the
  venv is ~1.0 GB and ``pip install`` took ~70 s here, with or without a warm
  pip cache).  The install is skipped when the venv's ``label-studio``
  executable exists and ``pip show label-studio`` succeeds.
* :func:`running_label_studio` starts ``label-studio start`` (Django's
  ``runserver`` -- this *is* how the open-source ``label-studio`` command serves)
  on ``127.0.0.1:<port>`` in its own process group, on SQLite (default) or
  PostgreSQL, creates a superuser with a known e-mail/password/API token, waits
  for ``/health`` and a token-authenticated API call, yields a
  :class:`LabelStudioServer` and always kills the process group on exit.
* :func:`create_project` and :func:`import_tasks` drive the REST API;
  :func:`import_tasks` returns the wall seconds of ONE bulk
  ``POST /api/projects/{id}/import`` until the tasks are committed, and verifies
  the task count afterwards.
* :func:`bench_import` glues it all together for one (database, size) point.

Findings for label-studio 1.23.2 (read from its source and verified here)
-----------------------------------------------------------------------------
* **User creation, non-interactively**: ``label-studio start --username E
  --password P --user-token T`` creates the superuser on first start (the
  username must look like an e-mail; the token must be longer than 5 characters
  and at most 40).  ``LABEL_STUDIO_USERNAME`` / ``LABEL_STUDIO_PASSWORD`` /
  ``LABEL_STUDIO_USER_TOKEN`` are the equivalent env vars; we pass the flags.
* **Auth**: new organisations default to JWT "personal access tokens" and
  *reject* the legacy ``Authorization: Token <key>`` header with 401
  ("legacy token authentication has been disabled for this organization") --
  verified on 1.23.2.
  Passing ``--enable-legacy-api-token`` (and/or the env var
  ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``) when the organisation is
  created on first start keeps the legacy scheme enabled, so ``Token <key>``
  with our chosen key works.  Should that ever not stick, we fall back to a
  session login (``/user/login/``) and ``POST /api/jwt/settings``
  ``{"legacy_api_tokens_enabled": true}`` -- the same switch as the UI toggle.
* **Database**: ``DJANGO_DB=sqlite`` (the default of the ``label-studio``
  command; file in ``<data_dir>/label_studio.sqlite3``) or ``DJANGO_DB=default``
  (== ``postgresql``) with ``POSTGRE_NAME``, ``POSTGRE_USER``,
  ``POSTGRE_PASSWORD``, ``POSTGRE_HOST``, ``POSTGRE_PORT``.  The data dir is
  ``--data-dir`` / ``LABEL_STUDIO_BASE_DATA_DIR``.
* **Import is synchronous** in the Community edition (``ImportAPI.create`` calls
  ``sync_import`` unless ``VERSION_EDITION != 'Community'``): the tasks are
  committed and the project counters updated before the 201 response, whose
  body holds ``task_count``.  Enterprise-style async imports answer
  ``{"import": <id>}`` instead; :func:`import_tasks` handles that too by polling
  ``GET /api/projects/{id}/imports/{import_id}`` until ``status == completed``.
* **No internet**: we pass ``--no-browser`` and set
  ``LATEST_VERSION_CHECK=false`` (PyPI version check at import time),
  ``COLLECT_ANALYTICS=false`` (telemetry POSTs), ``SENTRY_DSN=`` and
  ``FRONTEND_SENTRY_DSN=`` (Sentry defaults point at sentry.io).  Feature flags
  are offline by default in the Community edition.
* **Environment hygiene**: Label Studio reads any ``LABEL_STUDIO_*``,
  ``HEARTEX_*``, ``POSTGRE_*``, ``DJANGO_DB`` variables, and it only
  *setdefault*s ``DJANGO_SETTINGS_MODULE`` -- so when it is launched from a
  Django project's benchmark that exported ``DJANGO_SETTINGS_MODULE`` it would
  load the wrong settings.  We start it with those variables (and
  ``PYTHONPATH``/``VIRTUAL_ENV``) removed.
* ``label-studio start`` silently moves to the next free port when the
  requested one is busy; we refuse to start on a busy port instead.
* **Redis**: at import time Label Studio pings ``localhost:6379`` (hard-coded
  ``RQ_QUEUES``, no env override).  If a Redis runs there (ours does) it keeps
  that connection open but, with ``REDIS_ENABLED = False`` hard-coded in the
  open-source settings, it enqueues no jobs and writes nothing: every
  background job runs inline, so the import timing is complete.
* A fresh data dir / database costs ~30 s of migrations on first start (2
  cores); that happens before ``/health`` answers and is not timed.  The user
  and its token are only created on that first start: reuse a data dir or
  PostgreSQL database only together with the same ``token``.

Measured here (2 cores, label-studio 1.23.2, runserver, one request):
SQLite 10k ~1.7 s (~5,900 items/s), 100k ~15.5 s (~6,400 items/s);
PostgreSQL 15 10k ~2.7 s (~3,700 items/s), 100k ~26 s (~3,850 items/s).

Annotation (used by ``bench/annotate_load.py``): :func:`project_set_overlap` sets the overlap
(``maximum_annotations`` distinct annotators per task), :func:`create_annotators` signs up
annotator accounts and returns their tokens, :func:`next_task` and :func:`submit_choice` are the
two calls an annotator makes per task (``GET /api/projects/{id}/next``, ``POST
/api/tasks/{id}/annotations``).

Demo / CLI::

    python bench/peers/label_studio.py [VENV_DIR] [--sizes 10000,100000]
        [--databases sqlite,postgres] [--pg-dsn postgresql://postgres@127.0.0.1:5432/ls_bench]
        [--port 8088]

``VENV_DIR`` defaults to ``$LS_BENCH_VENV`` or ``/tmp/ls-venv``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from xml.sax.saxutils import escape, quoteattr

import requests

DEFAULT_VENV = pathlib.Path(os.environ.get("LS_BENCH_VENV", "/tmp/ls-venv"))
DEFAULT_PORT = 8088
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/ls_bench"
DEFAULT_USERNAME = "bench@example.com"  # Label Studio users are e-mails
DEFAULT_PASSWORD = "bench-password-123"
HTTP_TIMEOUT = 30  # seconds, for the small API calls

# Env vars Label Studio (or Django/Python) would pick up from the parent process.
_STRIP_ENV_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "POSTGRE_", "DJANGO_", "MYSQL_")
_STRIP_ENV_NAMES = {
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "DATABASE_NAME",
    "BASE_DATA_DIR",
    "USERNAME",
    "PASSWORD",
    "USER_TOKEN",
    "HOST",
    "PORT",
    "DEBUG",
    "LOG_LEVEL",
}
# Packages that must not end up in the venv (multi-GB GPU stacks).
_HEAVY_PACKAGES = ("torch", "tensorflow", "jax", "triton")


class LabelStudioError(RuntimeError):
    """Anything that went wrong installing, starting or driving Label Studio."""


def _log(msg: str) -> None:
    print(f"[label-studio bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- install


def _venv_python(venv_dir: pathlib.Path) -> pathlib.Path:
    return venv_dir / "bin" / "python"


def _pip_show_ok(venv_dir: pathlib.Path) -> bool:
    py = _venv_python(venv_dir)
    if not py.exists():
        return False
    r = subprocess.run(
        [str(py), "-m", "pip", "show", "-q", "label-studio"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    return r.returncode == 0


def label_studio_version(venv_dir: pathlib.Path) -> str:
    """The installed label-studio version in ``venv_dir`` (from package metadata)."""
    py = _venv_python(venv_dir)
    r = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        raise LabelStudioError(f"cannot read label-studio version in {venv_dir}: {r.stderr.strip()}")
    return r.stdout.strip()


def dir_size_bytes(path: pathlib.Path) -> int:
    """Total size of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if not os.path.islink(p):
                    total += os.path.getsize(p)
    return total


def ensure_venv(
    venv_dir: pathlib.Path,
    *,
    spec: str = "label-studio",
    python: str | None = None,
    install_timeout: float = 1800,
) -> pathlib.Path:
    """Make sure ``venv_dir`` is a virtualenv with label-studio; return its ``label-studio`` executable.

    Creates the venv with ``python3 -m venv`` (``python`` overrides the
    interpreter) when missing and runs ``pip install <spec>`` unless the
    executable exists and ``pip show label-studio`` succeeds.  pip's output goes
    to stderr.  Raises :class:`LabelStudioError` on failure, or when the
    install pulled in a GPU stack such as torch.
    """
    venv_dir = pathlib.Path(venv_dir).absolute()
    exe = venv_dir / "bin" / "label-studio"
    if exe.exists() and _pip_show_ok(venv_dir):
        _log(f"label-studio already installed in {venv_dir}")
        return exe

    if not _venv_python(venv_dir).exists():
        interpreter = python or shutil.which("python3") or sys.executable
        _log(f"creating virtualenv {venv_dir} with {interpreter}")
        r = subprocess.run([interpreter, "-m", "venv", str(venv_dir)], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise LabelStudioError(f"python -m venv {venv_dir} failed:\n{r.stdout}{r.stderr}")

    _log(f"pip install {spec} into {venv_dir} (takes a few minutes) ...")
    t0 = time.monotonic()
    cmd = [str(_venv_python(venv_dir)), "-m", "pip", "install", "--progress-bar", "off", spec]
    try:
        r = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=install_timeout)
    except subprocess.TimeoutExpired as e:
        raise LabelStudioError(f"pip install {spec} did not finish within {install_timeout:.0f} s") from e
    if r.returncode != 0:
        raise LabelStudioError(f"pip install {spec} failed with exit code {r.returncode} (see pip output above)")
    _log(f"pip install took {time.monotonic() - t0:.0f} s")

    if not exe.exists() or not _pip_show_ok(venv_dir):
        raise LabelStudioError(f"pip install {spec} finished but {exe} is missing or `pip show` fails")

    heavy = [p for p in _HEAVY_PACKAGES if _pip_show(venv_dir, p)]
    if heavy:
        raise LabelStudioError(f"label-studio pulled in heavy packages {heavy} into {venv_dir}; refusing to use it")
    return exe


def _pip_show(venv_dir: pathlib.Path, name: str) -> bool:
    r = subprocess.run(
        [str(_venv_python(venv_dir)), "-m", "pip", "show", "-q", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    return r.returncode == 0


# --------------------------------------------------------------------------- server


@dataclasses.dataclass
class LabelStudioServer:
    """A running Label Studio, as yielded by :func:`running_label_studio`."""

    base_url: str
    token: str
    username: str
    password: str
    database: str
    data_dir: pathlib.Path
    log_path: pathlib.Path
    process: subprocess.Popen

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.token)

    def log_tail(self, n_chars: int = 4000) -> str:
        return _tail(self.log_path, n_chars)


def auth_headers(token: str) -> dict[str, str]:
    """Headers for Label Studio's legacy token scheme (enabled by :func:`running_label_studio`)."""
    return {"Authorization": f"Token {token}"}


def _tail(path: pathlib.Path, n_chars: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n_chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "<no log>"


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def parse_pg_dsn(dsn: str) -> dict[str, str]:
    """``postgresql://user:pass@host:port/dbname`` -> Label Studio's ``POSTGRE_*`` env vars."""
    u = urllib.parse.urlsplit(dsn)
    if u.scheme not in ("postgres", "postgresql") or not u.path.strip("/"):
        raise ValueError(f"expected postgresql://user[:password]@host[:port]/dbname, got {dsn!r}")
    return {
        "POSTGRE_NAME": urllib.parse.unquote(u.path.lstrip("/")),
        "POSTGRE_USER": urllib.parse.unquote(u.username or "postgres"),
        "POSTGRE_PASSWORD": urllib.parse.unquote(u.password or ""),
        "POSTGRE_HOST": u.hostname or "127.0.0.1",
        "POSTGRE_PORT": str(u.port or 5432),
    }


def recreate_postgres_db(dsn: str = DEFAULT_PG_DSN, timeout: float = 60) -> None:
    """Drop (with FORCE) and re-create the database named in ``dsn`` using the ``psql`` client."""
    p = parse_pg_dsn(dsn)
    psql = shutil.which("psql")
    if not psql:
        raise LabelStudioError("psql not found on PATH; cannot (re)create the PostgreSQL database")
    name = p["POSTGRE_NAME"].replace('"', '""')
    env = dict(os.environ)
    if p["POSTGRE_PASSWORD"]:
        env["PGPASSWORD"] = p["POSTGRE_PASSWORD"]
    base = [psql, "-h", p["POSTGRE_HOST"], "-p", p["POSTGRE_PORT"], "-U", p["POSTGRE_USER"], "-d", "postgres"]
    base += ["-v", "ON_ERROR_STOP=1", "-q"]
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        r = subprocess.run(base + ["-c", sql], capture_output=True, text=True, env=env, timeout=timeout)
        if r.returncode != 0:
            raise LabelStudioError(f"psql failed on {sql!r}: {r.stderr.strip()}")


def _kill_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL what is left after ``grace`` s."""
    if proc.poll() is not None:
        # the leader is gone, but children in its group may not be
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _enable_legacy_tokens_via_session(base_url: str, username: str, password: str) -> None:
    """Fallback: log in like a browser and flip the organisation's legacy-token switch."""
    s = requests.Session()
    login_url = f"{base_url}/user/login/"
    s.get(login_url, timeout=HTTP_TIMEOUT)
    csrf = s.cookies.get("csrftoken", "")
    r = s.post(
        login_url,
        data={"email": username, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": login_url, "X-CSRFToken": csrf},
        timeout=HTTP_TIMEOUT,
        allow_redirects=False,
    )
    if r.status_code not in (302, 303):
        raise LabelStudioError(f"session login as {username} failed: HTTP {r.status_code}")
    csrf = s.cookies.get("csrftoken", csrf)
    r = s.post(
        f"{base_url}/api/jwt/settings",
        json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": True},
        headers={"Referer": base_url + "/", "X-CSRFToken": csrf},
        timeout=HTTP_TIMEOUT,
    )
    if r.status_code != 200:
        raise LabelStudioError(f"enabling legacy API tokens failed: HTTP {r.status_code} {r.text[:300]}")


@contextlib.contextmanager
def running_label_studio(
    exe: pathlib.Path,
    data_dir: pathlib.Path,
    port: int = DEFAULT_PORT,
    database: str = "sqlite",
    pg_dsn: str | None = None,
    *,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    token: str | None = None,
    startup_timeout: float = 180,
    extra_env: dict[str, str] | None = None,
    enable_legacy_token_flag: bool = True,
) -> Iterator[LabelStudioServer]:
    """Run ``label-studio start`` on 127.0.0.1:``port`` for the duration of the ``with`` block.

    ``database`` is ``"sqlite"`` (file inside ``data_dir``) or ``"postgres"``
    (``pg_dsn``, default :data:`DEFAULT_PG_DSN`; the database must exist and
    should be empty -- see :func:`recreate_postgres_db`).  A superuser ``username``/``password``
    with API ``token`` (random 40 hex chars when not given) is created.  The
    server log goes to ``data_dir/label-studio.log``.  Waits up to
    ``startup_timeout`` s (first start runs all migrations) for ``/health`` and
    a successful token-authenticated ``/api/current-user/whoami``.  On exit the whole
    process group is terminated (SIGTERM, then SIGKILL).

    ``enable_legacy_token_flag=False`` leaves out ``--enable-legacy-api-token``
    and its env var (only useful to exercise the session-login fallback).
    """
    exe = pathlib.Path(exe)
    if not exe.exists():
        raise LabelStudioError(f"label-studio executable not found: {exe} (run ensure_venv first)")
    if database not in ("sqlite", "postgres"):
        raise ValueError(f"database must be 'sqlite' or 'postgres', not {database!r}")
    token = token or secrets.token_hex(20)
    if not 5 < len(token) <= 40:
        raise ValueError("Label Studio API tokens must be 6..40 characters long")
    host = "127.0.0.1"
    if _port_in_use(host, port):
        raise LabelStudioError(f"port {port} on {host} is already in use; pick another port")

    data_dir = pathlib.Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "label-studio.log"

    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_ENV_PREFIXES) and k not in _STRIP_ENV_NAMES}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true" if enable_legacy_token_flag else "false",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if database == "sqlite":
        env["DJANGO_DB"] = "sqlite"
    else:
        env["DJANGO_DB"] = "default"  # == 'postgresql' in label_studio/core/settings/base.py
        env.update(parse_pg_dsn(pg_dsn or DEFAULT_PG_DSN))
    if extra_env:
        env.update(extra_env)

    cmd = [
        str(exe),
        "start",
        "--no-browser",
        "--internal-host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--username",
        username,
        "--password",
        password,
        "--user-token",
        token,
    ]
    if enable_legacy_token_flag:
        cmd.append("--enable-legacy-api-token")
    base_url = f"http://{host}:{port}"
    _log(f"starting label-studio ({database}) on {base_url}, data dir {data_dir}, log {log_path}")
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(data_dir),
        start_new_session=True,  # own process group, so we can kill everything it spawns
    )
    server = LabelStudioServer(base_url, token, username, password, database, data_dir, log_path, proc)
    try:
        _wait_until_up(server, startup_timeout)
        yield server
    finally:
        _log(f"stopping label-studio (pid {proc.pid})")
        _kill_group(proc)
        log_file.close()


def _wait_until_up(server: LabelStudioServer, timeout: float) -> None:
    t0 = time.monotonic()
    deadline = t0 + timeout
    last_err = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LabelStudioError(
                f"label-studio exited with code {server.process.returncode} during startup; "
                f"log tail ({server.log_path}):\n{server.log_tail()}"
            )
        try:
            r = requests.get(f"{server.base_url}/health", timeout=5)
            if r.status_code == 200:
                break
            last_err = f"/health HTTP {r.status_code}"
        except requests.RequestException as e:
            last_err = type(e).__name__
        time.sleep(1)
    else:
        raise LabelStudioError(
            f"label-studio did not answer /health on {server.base_url} within {timeout:.0f} s ({last_err}); "
            f"log tail ({server.log_path}):\n{server.log_tail()}"
        )
    _log(f"label-studio up after {time.monotonic() - t0:.1f} s")

    url = f"{server.base_url}/api/current-user/whoami"
    r = requests.get(url, headers=server.headers, timeout=HTTP_TIMEOUT)
    if r.status_code == 401:
        _log("legacy token rejected (401); enabling legacy API tokens via session login")
        _enable_legacy_tokens_via_session(server.base_url, server.username, server.password)
        r = requests.get(url, headers=server.headers, timeout=HTTP_TIMEOUT)
    if r.status_code != 200:
        raise LabelStudioError(
            f"token auth against {url} failed: HTTP {r.status_code} {r.text[:300]}; log tail:\n{server.log_tail()}"
        )


# --------------------------------------------------------------------------- API


def _check(r: requests.Response, what: str, ok: tuple[int, ...] = (200, 201)) -> dict | list:
    if r.status_code not in ok:
        raise LabelStudioError(f"{what} failed: HTTP {r.status_code}: {r.text[:1000]}")
    try:
        return r.json()
    except ValueError as e:
        raise LabelStudioError(f"{what}: response is not JSON: {r.text[:300]}") from e


def labeling_config(labels: list[str], text_field: str = "text") -> str:
    """A single-choice text classification labeling config over ``labels``."""
    if not labels:
        raise ValueError("need at least one label")
    choices = "\n".join(f"    <Choice value={quoteattr(str(label))}/>" for label in labels)
    return (
        "<View>\n"
        f'  <Text name="text" value="${escape(text_field)}"/>\n'
        '  <Choices name="label" toName="text" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def create_project(base_url: str, token: str, labels: list[str], title: str = "ingest-bench") -> int:
    """``POST /api/projects`` with a text classification config; returns the project id."""
    r = requests.post(
        f"{base_url}/api/projects",
        headers=auth_headers(token),
        json={"title": title, "label_config": labeling_config(labels)},
        timeout=HTTP_TIMEOUT,
    )
    body = _check(r, "create project")
    return int(body["id"])


def project_set_overlap(base_url: str, token: str, project_id: int, annotations_per_task: int) -> None:
    """Every task needs ``annotations_per_task`` annotations by distinct annotators (overlap 100%)."""
    r = requests.patch(
        f"{base_url}/api/projects/{project_id}",
        headers=auth_headers(token),
        json={"maximum_annotations": annotations_per_task, "overlap_cohort_percentage": 100},
        timeout=HTTP_TIMEOUT,
    )
    _check(r, "set project overlap")


def create_annotators(server: LabelStudioServer, n: int, prefix: str = "annotator") -> list[str]:
    """``n`` annotator accounts in the server's organisation; returns their API tokens.

    Signs each one up like a browser (``/user/signup/``: the open-source edition puts new users
    into its single organisation) and reads the legacy token from ``/api/current-user/token``.
    """
    tokens = []
    for i in range(n):
        s = requests.Session()
        signup = f"{server.base_url}/user/signup/"
        s.get(signup, timeout=HTTP_TIMEOUT)
        csrf = s.cookies.get("csrftoken", "")
        r = s.post(
            signup,
            data={"email": f"{prefix}{i}@example.com", "password": "Bench-annotator-9137", "csrfmiddlewaretoken": csrf},
            headers={"Referer": signup, "X-CSRFToken": csrf},
            timeout=HTTP_TIMEOUT,
            allow_redirects=False,
        )
        if r.status_code not in (302, 303):
            raise LabelStudioError(f"signup of {prefix}{i} failed: HTTP {r.status_code} {r.text[:300]}")
        body = _check(s.get(f"{server.base_url}/api/current-user/token", timeout=HTTP_TIMEOUT), "current-user token")
        tokens.append(body["token"])
    return tokens


def next_task(base_url: str, token: str, project_id: int) -> dict | None:
    """``GET /api/projects/{id}/next``: the task Label Studio hands this user next (None: none left)."""
    r = requests.get(f"{base_url}/api/projects/{project_id}/next", headers=auth_headers(token), timeout=HTTP_TIMEOUT)
    if r.status_code == 404:
        return None
    return _check(r, "next task")


def submit_choice(base_url: str, token: str, project_id: int, task_id: int, choice: str, lead_time: float = 1.0) -> int:
    """``POST /api/tasks/{id}/annotations`` with one choice of the ``labeling_config`` above; returns its id."""
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]
    r = requests.post(
        f"{base_url}/api/tasks/{task_id}/annotations?project={project_id}",
        headers=auth_headers(token),
        json={"result": result, "lead_time": lead_time},
        timeout=HTTP_TIMEOUT,
    )
    return int(_check(r, "submit annotation")["id"])


def project_task_count(base_url: str, token: str, project_id: int) -> int:
    """Number of tasks in a project (``task_number`` of ``GET /api/projects/{id}``)."""
    r = requests.get(f"{base_url}/api/projects/{project_id}", headers=auth_headers(token), timeout=HTTP_TIMEOUT)
    return int(_check(r, "get project")["task_number"])


def _as_task(record: dict) -> dict:
    return record if "data" in record else {"data": record}


def import_tasks(
    base_url: str,
    token: str,
    project_id: int,
    records: list[dict],
    *,
    timeout: float = 3600,
    poll_interval: float = 0.25,
) -> float:
    """Import ``records`` with ONE ``POST /api/projects/{id}/import``; return wall seconds until done.

    Each record becomes a task ``{"data": record}`` (records that already have
    a ``"data"`` key are sent as they are), e.g. ``{"data": {"text": ...,
    "external_id": ...}}``.  The JSON body is serialised before the clock
    starts; the clock covers upload, server-side parsing/validation/insert and,
    for asynchronous imports (``{"import": id}`` answers), polling until the
    import job has completed.  Afterwards the project's task count is checked
    to have grown by exactly ``len(records)``; :class:`LabelStudioError`
    otherwise.
    """
    headers = {**auth_headers(token), "Content-Type": "application/json"}
    body = json.dumps([_as_task(r) for r in records]).encode()
    before = project_task_count(base_url, token, project_id)
    expected = before + len(records)
    url = f"{base_url}/api/projects/{project_id}/import"

    t0 = time.perf_counter()
    try:
        r = requests.post(url, headers=headers, data=body, timeout=timeout)
    except requests.Timeout as e:
        raise LabelStudioError(f"import of {len(records)} tasks did not answer within {timeout:.0f} s") from e
    resp = _check(r, f"import of {len(records)} tasks")
    if isinstance(resp, dict) and "import" in resp and "task_count" not in resp:
        _wait_for_async_import(base_url, token, project_id, int(resp["import"]), t0 + timeout, poll_interval)
    elapsed = time.perf_counter() - t0

    if isinstance(resp, dict) and "task_count" in resp and int(resp["task_count"]) != len(records):
        raise LabelStudioError(f"import reported task_count={resp['task_count']}, expected {len(records)}")
    got = project_task_count(base_url, token, project_id)
    if got != expected:
        raise LabelStudioError(f"project {project_id} has {got} tasks after import, expected {expected}")
    return elapsed


def _wait_for_async_import(
    base_url: str, token: str, project_id: int, import_id: int, deadline: float, poll_interval: float
) -> None:
    url = f"{base_url}/api/projects/{project_id}/imports/{import_id}"
    while True:
        body = _check(requests.get(url, headers=auth_headers(token), timeout=HTTP_TIMEOUT), "import status")
        status = body.get("status")
        if status == "completed":
            return
        if status == "failed":
            raise LabelStudioError(f"async import {import_id} failed: {body.get('traceback') or body}")
        if time.perf_counter() > deadline:
            raise LabelStudioError(f"async import {import_id} still {status!r} at the deadline")
        time.sleep(poll_interval)


# --------------------------------------------------------------------------- one-shot


@dataclasses.dataclass
class BenchResult:
    database: str
    n_items: int
    seconds: float
    version: str

    @property
    def items_per_s(self) -> float:
        return self.n_items / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (
            f"label-studio {self.database} {self.n_items} items: {self.seconds:.2f} s, {self.items_per_s:.0f} items/s"
        )


def synthetic_records(n: int) -> list[dict]:
    """``n`` small text records like those of the demo."""
    return [{"text": f"customer message {i} about card {i % 77}", "external_id": f"ext-{i}"} for i in range(n)]


def bench_import(
    records: list[dict],
    labels: list[str],
    *,
    database: str = "sqlite",
    venv_dir: pathlib.Path = DEFAULT_VENV,
    port: int = DEFAULT_PORT,
    pg_dsn: str = DEFAULT_PG_DSN,
    recreate_db: bool = True,
    startup_timeout: float = 180,
    import_timeout: float = 3600,
) -> BenchResult:
    """Install if needed, start a fresh Label Studio, create a project, import ``records`` once, stop.

    SQLite runs in a fresh temporary data dir; PostgreSQL in the database of
    ``pg_dsn``, dropped and re-created first when ``recreate_db`` (the data dir
    is still a fresh temp dir).  Only the import request is timed.
    """
    exe = ensure_venv(pathlib.Path(venv_dir))
    version = label_studio_version(pathlib.Path(venv_dir))
    if database == "postgres" and recreate_db:
        recreate_postgres_db(pg_dsn)
    with tempfile.TemporaryDirectory(prefix=f"ls-bench-{database}-") as tmp:
        with running_label_studio(
            exe, pathlib.Path(tmp), port, database=database, pg_dsn=pg_dsn, startup_timeout=startup_timeout
        ) as ls:
            pid = create_project(ls.base_url, ls.token, labels)
            _log(f"importing {len(records)} tasks into project {pid} ...")
            seconds = import_tasks(ls.base_url, ls.token, pid, records, timeout=import_timeout)
    return BenchResult(database, len(records), seconds, version)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark Label Studio's bulk import (one request).")
    ap.add_argument("venv_dir", nargs="?", type=pathlib.Path, default=DEFAULT_VENV)
    ap.add_argument("--sizes", default="10000", help="comma-separated record counts (default 10000)")
    ap.add_argument("--databases", default="sqlite", help="comma-separated: sqlite,postgres (default sqlite)")
    ap.add_argument("--pg-dsn", default=os.environ.get("LS_BENCH_PG_DSN", DEFAULT_PG_DSN))
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--startup-timeout", type=float, default=180)
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    ensure_venv(args.venv_dir)
    _log(f"venv ready after {time.monotonic() - t0:.0f} s; label-studio {label_studio_version(args.venv_dir)}")
    labels = ["billing", "card", "fraud", "other"]
    for database in [d.strip() for d in args.databases.split(",") if d.strip()]:
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            res = bench_import(
                synthetic_records(n),
                labels,
                database=database,
                venv_dir=args.venv_dir,
                port=args.port,
                pg_dsn=args.pg_dsn,
                startup_timeout=args.startup_timeout,
            )
            print(res.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
