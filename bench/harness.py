"""Helpers shared by the benchmarks that drive a real Quorum server: paths, subprocesses, ports,
the text corpus, and a migrated database with a token-holding superuser."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")

_SUPERUSER_TOKEN = (
    "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token;"
    "u = User.objects.create_superuser('bench', 'bench@example.com', 'x');"
    "print(Token.objects.create(user=u).key)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict, **kwargs) -> str:
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def texts() -> list[str]:
    """Real customer queries: banking77's training texts when ../shared is there, else the demo slice."""
    shared = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"
    source = shared if shared.exists() else ROOT / "annotation" / "demo" / "banking77_sample.csv"
    with open(source, newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def migrate_with_superuser(env: dict, workdir: Path) -> str:
    """Migrate the database ``env`` points at, create the ``bench`` superuser, return its API token."""
    (workdir / "staticfiles").mkdir(exist_ok=True)
    run([PYTHON, "manage.py", "migrate", "--verbosity", "0"], env)
    return run([PYTHON, "manage.py", "shell", "-c", _SUPERUSER_TOKEN], env).strip().splitlines()[-1]
