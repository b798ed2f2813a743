#!/usr/bin/env python
"""Pool-ingest throughput through the real HTTP API (gunicorn on loopback).

For each database (SQLite, PostgreSQL) a fresh database is migrated, gunicorn is started on
127.0.0.1, and records are pushed in ONE request each:

  new        N new items into an empty project
  repeat     the same N records again (idempotent: everything unchanged)
  10% text   the same N records with 10% of the texts changed (updates + embedding invalidation)

for N in --sizes (default 10,000 and 100,000). Texts are BANKING77 queries (../shared/datasets,
or the demo slice shipped in the repo) with unique ids. Prints seconds, items/s and the peak
resident memory of the gunicorn workers so far (VmHWM; the first line also gives their resident
memory before any push), which shows what one large push costs the server: the body is parsed as
a stream, record by record, so it is never held whole as text or as parsed JSON.

With --label-studio the peer is installed into its own virtualenv (bench/.venvs/label-studio,
or $LS_BENCH_VENV),
started on 127.0.0.1 on the same database kind, and the same records are imported through its
API (POST /api/projects/{id}/import); the ratio is printed beside our figures.

  python bench/ingest.py [--sizes 10000,100000] [--databases sqlite,postgres] [--label-studio]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PG_ADMIN_URL, PYTHON, ROOT, free_port, migrate_with_superuser, texts  # noqa: E402


def make_records(n: int, corpus: list[str], prefix: str) -> list[dict]:
    return [
        {"external_id": f"{prefix}-{i}", "text": f"{corpus[i % len(corpus)]} (#{i})", "metadata": {"n": i % 7}}
        for i in range(n)
    ]


def database_url(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    import psycopg

    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS quorum_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE quorum_bench")
    return f"{PG_ADMIN_URL}/quorum_bench"


@contextmanager
def quorum_server(kind: str, workdir: Path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quorum.settings",
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(kind, workdir),
        "QUORUM_DATA_DIR": str(workdir),
        "CELERY_BROKER_URL": "filesystem://localhost//",
        "QUORUM_INGEST_MAX_BYTES": str(1024**3),
        "QUORUM_INGEST_MAX_RECORDS": "2000000",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_RESULT_BACKEND", None)
    token = migrate_with_superuser(env, workdir)
    port = free_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "quorum.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "600",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{base}/api/v1/projects", timeout=2)
                break
            except requests.RequestException:  # not listening yet, or too busy starting to answer
                time.sleep(0.1)
        yield base, token, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_memory_mib(master: int, field: str = "VmHWM") -> float:
    """The largest ``field`` (VmHWM: peak resident; VmRSS: resident now) among gunicorn's workers, MiB."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return float("nan")
    return max((_status_kib(int(pid), field) for pid in children), default=0) / 1024


def push(session: requests.Session, base: str, project_id: int, records: list[dict]) -> tuple[float, dict]:
    body = json.dumps(records).encode()
    started = time.perf_counter()
    response = session.post(
        f"{base}/api/v1/projects/{project_id}/items",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=600,
    )
    seconds = time.perf_counter() - started
    if response.status_code not in (200, 201):
        raise RuntimeError(f"push failed: {response.status_code} {response.text[:500]}")
    return seconds, response.json()


def bench_quorum(kind: str, sizes: list[int], corpus: list[str], new_only: bool = False) -> dict[int, float]:
    new_rates = {}
    with (
        tempfile.TemporaryDirectory(prefix="quorum-bench-") as tmp,
        quorum_server(kind, Path(tmp)) as (
            base,
            token,
            master,
        ),
    ):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        for n in sizes:
            project = session.post(
                f"{base}/api/v1/projects", json={"name": f"bench {n}", "labels": ["a", "b", "c"]}
            ).json()
            records = make_records(n, corpus, f"{kind}-{n}")
            body_mib = len(json.dumps(records)) / 2**20
            print(
                f"quorum   {kind:<8} {n:>7} body {body_mib:,.0f} MiB; workers resident before: "
                f"{worker_memory_mib(master, 'VmRSS'):,.0f} MiB",
                flush=True,
            )
            seconds, report = push(session, base, project["id"], records)
            assert report["created"] == n, report
            new_rates[n] = n / seconds
            print(
                f"quorum   {kind:<8} {n:>7} new        {seconds:7.2f} s  {n / seconds:>9,.0f} items/s"
                f"  worker peak {worker_memory_mib(master):,.0f} MiB",
                flush=True,
            )
            if new_only:
                continue

            seconds, report = push(session, base, project["id"], records)
            assert report["unchanged"] == n, report
            print(f"quorum   {kind:<8} {n:>7} repeat     {seconds:7.2f} s  {n / seconds:>9,.0f} items/s", flush=True)

            rng = random.Random(n)
            for index in rng.sample(range(n), n // 10):
                records[index] = {**records[index], "text": records[index]["text"] + " (edited)"}
            seconds, report = push(session, base, project["id"], records)
            assert report["updated"] == n // 10 and report["unchanged"] == n - n // 10, report
            print(f"quorum   {kind:<8} {n:>7} 10% text   {seconds:7.2f} s  {n / seconds:>9,.0f} items/s", flush=True)
    return new_rates


def bench_label_studio(kind: str, sizes: list[int], corpus: list[str]) -> dict[int, float]:
    """Label Studio's import of the same records, each size into a fresh server and database."""
    sys.path.insert(0, str(ROOT))
    from bench.peers import label_studio as ls

    venv = Path(os.environ.get("LS_BENCH_VENV", ROOT / "bench" / ".venvs" / "label-studio"))
    rates = {}
    for n in sizes:
        result = ls.bench_import(
            make_records(n, corpus, f"ls-{kind}-{n}"),
            ["a", "b", "c"],
            database=kind,
            venv_dir=venv,
            port=free_port(),
            pg_dsn=f"{PG_ADMIN_URL.replace('postgres://', 'postgresql://')}/ls_bench",
        )
        rates[n] = result.items_per_s
        print(
            f"label-st {kind:<8} {n:>7} new        {result.seconds:7.2f} s  {result.items_per_s:>9,.0f} items/s"
            f"  (label-studio {result.version})",
            flush=True,
        )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--new-only", action="store_true", help="only the first push of each size")
    parser.add_argument("--label-studio", action="store_true", help="also install and measure Label Studio")
    parser.add_argument("--label-studio-sizes", default=None, help="sizes for Label Studio (default: --sizes)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    corpus = texts()
    print(
        f"# {os.cpu_count()} CPUs, gunicorn 2 workers, one request per push, {len(corpus)} distinct base texts",
        flush=True,
    )
    summary = []
    for kind in args.databases.split(","):
        ours = bench_quorum(kind, sizes, corpus, args.new_only)
        if args.label_studio:
            ls_sizes = [int(s) for s in (args.label_studio_sizes or args.sizes).split(",")]
            theirs = bench_label_studio(kind, ls_sizes, corpus)
            for n, rate in theirs.items():
                if n in ours:
                    summary.append(
                        f"{kind:<8} {n:>7} items: quorum {ours[n]:>9,.0f}/s  label-studio {rate:>7,.0f}/s  ratio {ours[n] / rate:6.1f}x"
                    )
    if summary:
        print("\n# new-item ingest, quorum vs label-studio")
        print("\n".join(summary))


if __name__ == "__main__":
    main()
