"""Fuzz the REST API with schemathesis against a live server, and count what it finds.

    .venv/bin/python bench/fuzz_api.py --minutes 3

Schemathesis (4.x) lives in its own virtualenv (``bench/.venvs/fuzz``, made on first use), so the
project's environment never sees it. The script starts Quorum under gunicorn on a throw-away SQLite
database, creates an admin with a token and real objects (a project with a hashing encoder, items,
an annotator, an assignment, an annotation, a scoring run, a training job), points every path
parameter at them, and runs every check (``--checks all``) over ``/api/v1/schema/``. It prints a
table of failures per check, the main ones being:

- ``not_a_server_error``: a 5xx;
- ``status_code_conformance``: a status the schema does not document;
- ``positive_data_acceptance``: a request valid by the schema rejected;
- ``negative_data_rejection``: a request invalid by the schema accepted;

and the server's own count of 5xx answers (its log). The raw report (ndjson) is kept under
``bench/results/fuzz/``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.peer_venv import ensure  # noqa: E402

VENV = ROOT / "bench" / ".venvs" / "fuzz"
REQUIREMENT = "schemathesis>=4.0,<5"
RESULTS = ROOT / "bench" / "results" / "fuzz"

SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
import json, sys
User = get_user_model()
admin = User.objects.create_user("fuzz-admin", password="fuzz-admin-pw-1", is_staff=True, is_superuser=True)
User.objects.create_user("fuzz-annotator", password="fuzz-ann-pw-1")
token = Token.objects.create(user=admin).key
api = APIClient(); api.force_authenticate(admin)
def ok(response):
    assert response.status_code < 300, (response.status_code, response.content[:500])
    return response.json()
project = ok(api.post("/api/v1/projects", {"name": "Fuzz", "labels": ["yes", "no", "maybe"],
    "encoder": "hashing:8", "batch_size": 5, "labels_per_item": 1}, format="json"))
pid = project["id"]
records = [{"external_id": f"x{i}", "text": f"text number {i}", "embedding": [((i * 7 + j) % 5) / 5 + 0.1 for j in range(8)]}
           for i in range(30)]
records.append({"external_id": "gold", "text": "gold text", "label": "yes"})
ok(api.post(f"/api/v1/projects/{pid}/items", records, format="json"))
ok(api.post(f"/api/v1/projects/{pid}/members", {"username": "fuzz-annotator", "role": "annotator"}, format="json"))
nxt = ok(api.post(f"/api/v1/projects/{pid}/next", {}, format="json"))
assignment = nxt["assignment"]["id"]
annotation = ok(api.post(f"/api/v1/assignments/{assignment}/annotation", {"label": "yes"}, format="json"))
second = ok(api.post(f"/api/v1/projects/{pid}/next", {}, format="json"))["assignment"]
run = api.post(f"/api/v1/projects/{pid}/scoring-runs", {}, format="json").json().get("id", 1)
job = api.post(f"/api/v1/projects/{pid}/training-jobs").json().get("id", 1)
batch = ok(api.get(f"/api/v1/projects/{pid}/ingests"))["results"][0]["id"]
print(json.dumps({"token": token, "project_id": pid, "assignment_id": (second or {}).get("id", assignment),
    "annotation_id": annotation["annotation"]["id"], "item_id": annotation["annotation"]["item"],
    "username": "fuzz-annotator", "batch_id": batch, "run_id": run, "job_id": job, "version": 1, "review_id": 1}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG"}}
    env.update(
        DJANGO_SETTINGS_MODULE="quorum.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",  # testserver: the set-up client
        QUORUM_DATA_DIR=str(data_dir),
        SECURE_COOKIES="0",
        LOG_LEVEL="WARNING",
        # The fuzzer sends bad tokens on purpose: keep the failure throttle out of the way.
        QUORUM_AUTH_FAILURE_RATE="100000/min",
    )
    return env


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer {url} within {seconds}s")


def summarise(ndjson: Path) -> collections.Counter:
    """Failures per check from schemathesis' ndjson event stream: one per check and operation."""
    counts: collections.Counter = collections.Counter()
    seen = set()
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        for kind, body in event.items():
            if kind != "ScenarioFinished":
                continue
            label = (body.get("recorder") or {}).get("label", "")
            for check in _checks(body):
                if str(check.get("status")).lower() != "failure":
                    continue
                failure = (check.get("failure_info") or {}).get("failure") or {}
                key = (check.get("name"), failure.get("operation") or label, failure.get("code", ""))
                if key not in seen:
                    seen.add(key)
                    counts[check.get("name")] += 1
    return counts


def _checks(body) -> list[dict]:
    found = []
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "name" in node and "status" in node and "failure_info" in node:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="fuzzing time budget")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    python = ensure(VENV, REQUIREMENT, "import schemathesis")
    RESULTS.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="quorum-fuzz-"))
    env = server_env(data_dir)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    setup = subprocess.run([*manage, "shell", "-c", SETUP], cwd=ROOT, env=env, capture_output=True, text=True)
    if setup.returncode:
        raise SystemExit(f"setting up the fuzzed objects failed:\n{setup.stderr[-3000:]}")
    ids = json.loads(setup.stdout.strip().splitlines()[-1])
    token = ids.pop("token")

    port = free_port()
    log_path = RESULTS / "server.log"
    gunicorn = [sys.executable, "-m", "gunicorn", "quorum.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--threads", "4"]
    with open(log_path, "w") as log:
        server = subprocess.Popen(gunicorn, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz")
        config = RESULTS / "schemathesis.toml"
        config.write_text(
            "[parameters]\n" + "".join(f'"path.{name}" = {json.dumps(value)}\n' for name, value in ids.items())
        )
        ndjson = RESULTS / "events.ndjson"
        command = [
            str(python.parent / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{base}/api/v1/schema/?format=json",
            "--url",
            base,
            "--checks",
            "all",
            "-H",
            f"Authorization: Token {token}",
            "--max-time",
            str(int(args.minutes * 60)),
            "--workers",
            str(args.workers),
            "--seed",
            str(args.seed),
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(ndjson),
            "--continue-on-failure",
            # Deleting the project would leave every other operation nothing but 404s.
            "--exclude-operation-id",
            "projects_destroy",
        ]
        started = time.monotonic()
        run = subprocess.run(command, cwd=RESULTS, capture_output=True, text=True)
        elapsed = time.monotonic() - started
        (RESULTS / "schemathesis.out").write_text(run.stdout + run.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)

    counts = summarise(ndjson) if ndjson.exists() else collections.Counter()
    server_errors = log_path.read_text().count("Internal Server Error")
    print(f"schemathesis {elapsed:.0f}s, exit {run.returncode}; ids: {ids}")
    print(f"{'check':<34} failures")
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "positive_data_acceptance",
        "negative_data_rejection",
        *sorted(
            set(counts)
            - {"not_a_server_error", "status_code_conformance", "positive_data_acceptance", "negative_data_rejection"}
        ),
    ):
        print(f"{name:<34} {counts.get(name, 0)}")
    print(f"{'server log: Internal Server Error':<34} {server_errors}")
    print(f"details: {RESULTS / 'schemathesis.out'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
