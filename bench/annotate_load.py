#!/usr/bin/env python
"""Annotators under load: next item + submit through the real HTTP API (gunicorn on loopback).

A fresh PostgreSQL database (``quorum_bench``) is migrated; a project with --items items (default
100,000, pushed through the ingest API) is queued in full (as a scoring run would), and for each
--annotators count (default 8 and 32) that many simulated annotators, each a distinct user with
its own token and keep-alive connection, loop ``POST /projects/{id}/next`` +
``POST /assignments/{id}/annotation`` for --duration seconds (default 60). They pick the item's
"true" label 90% of the time, so some items disagree and ask for an extra label.

Printed: annotations/s, p50/p95/p99/max latency of next and submit, errors (non-2xx or transport
failures) and, from the database afterwards, duplicates: an (item, annotator) pair handed out or
labelled twice, an item with more annotations than slots, and queue counters that disagree with
the leases and annotations.

With --label-studio the peer (installed into its own virtualenv by bench/peers/label_studio.py) is
measured with the same client: ``GET /api/projects/{id}/next`` + ``POST /api/tasks/{id}/annotations``
by the same number of distinct users, and the ratio is printed.

The client runs in --client-procs processes (threads inside) so that it does not starve the
server of CPU; on a small machine client, server and database share the same cores, so figures
are noisy.

  python bench/annotate_load.py [--items 100000] [--annotators 8,32] [--duration 60]
                                [--think-ms 0,1000] [--workers 4] [--threads 1] [--label-studio]

--think-ms adds a pause per item between next and submit (a person reading and deciding; not part
of the measured latencies); 0 sends requests back to back, which measures the most the server
sustains, and with N annotators the latency of a closed loop is then about N / throughput.

As in production, a real Celery worker runs beside the server (Redis broker, --broker, purged
first), so every submit schedules the debounced aggregation and refills, and their locks meet the
annotators' (--no-worker: none, the web process alone). Deadlocks are counted from PostgreSQL's
``pg_stat_database.deadlocks`` of the database, before and after each run (read after the server's
connections have gone idle long enough to report their counters).

Against a server that is already running (nothing is dropped or migrated):

  python bench/annotate_load.py --base-url https://quorum.example.org --token ADMIN_TOKEN \
      [--project ID] [--database-url postgres://.../quorum]

creates the annotator accounts through ``POST /api/v1/users`` (names ``load-<run>-<n>``, members of
the project), gets their tokens from ``POST /api/v1/auth/token``, and, without --project, creates a
project and pushes --items items through the API; the server's own loop fills the queue. With
--database-url the duplicate and deadlock checks run against that database; without, they are
reported as not checked.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PG_ADMIN_URL, PYTHON, ROOT, free_port, migrate_with_superuser, run, texts  # noqa: E402

DB_NAME = "quorum_bench"
LABELS = ["billing", "card", "fraud", "other"]


# --- server ----------------------------------------------------------------------------------


def recreate_database() -> str:
    import psycopg

    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    return f"{PG_ADMIN_URL}/{DB_NAME}"


def server_env(workdir: Path, database_url: str, broker_url: str | None = None) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quorum.settings",
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url,
        "CONN_MAX_AGE": "600",
        "QUORUM_DATA_DIR": str(workdir),
        "CELERY_BROKER_URL": broker_url or "filesystem://localhost//",
        "QUORUM_INGEST_MAX_BYTES": str(1024**3),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_RESULT_BACKEND", None)
    return env


SETUP_SCRIPT = """
import json, random, sys
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from acquisition.models import ScoringRun
from annotation.models import Item, Membership, Project, Role
from annotation.services.queue import QueueCandidate, queue_replace

project = Project.objects.get(pk={project_id})
users = User.objects.bulk_create([User(username=f"annotator{{i}}") for i in range({n_users})])
users = list(User.objects.filter(username__startswith="annotator").order_by("id"))
Membership.objects.bulk_create([Membership(project=project, user=u, role=Role.ANNOTATOR) for u in users])
tokens = [Token.objects.create(user=u).key for u in users]
rng = random.Random(7)
ids = list(Item.objects.filter(project=project).values_list("id", flat=True))
run = ScoringRun.objects.create(project=project, strategy="margin", trigger="manual", status="succeeded")
report = queue_replace(
    project=project,
    candidates=[QueueCandidate(item_id=i, priority=rng.random(), score=None) for i in ids],
    strategy="margin",
    run=run,
)
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")  # what autovacuum does shortly after a bulk load
print(json.dumps({{"tokens": tokens, "queued": report.written}}))
"""


@contextmanager
def celery_worker(env: dict, nice: int = 0):
    """A real worker on the server's broker (its queue purged first), as in production."""
    run([PYTHON, "-m", "celery", "-A", "quorum", "purge", "-f"], env)
    cmd = [PYTHON, "-m", "celery", "-A", "quorum", "worker", "-l", "warning", "-c", "1", "-Q", "celery,default,gpu"]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    worker = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    try:
        yield worker
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


@contextmanager
def quorum_server(workdir: Path, workers: int, threads: int, broker_url: str | None = None):
    database_url = recreate_database()
    env = server_env(workdir, database_url, broker_url)
    token = migrate_with_superuser(env, workdir)
    port = free_port()
    cmd = [PYTHON, "-m", "gunicorn", "quorum.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    if threads > 1:
        cmd += ["--worker-class", "gthread", "--threads", str(threads)]
    cmd += ["--timeout", "600", "--log-level", "warning", "--backlog", "2048"]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                requests.get(f"{base}/api/v1/projects", timeout=10)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield base, token, env, database_url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def prepare_quorum(base: str, token: str, env: dict, n_items: int, n_users: int) -> tuple[int, list[str]]:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    project = session.post(
        f"{base}/api/v1/projects", json={"name": "load", "labels": LABELS, "labels_per_item": 2}, timeout=60
    ).json()
    corpus = texts()
    records = [{"external_id": f"r-{i}", "text": f"{corpus[i % len(corpus)]} (#{i})"} for i in range(n_items)]
    started = time.perf_counter()
    response = session.post(
        f"{base}/api/v1/projects/{project['id']}/items",
        data=json.dumps(records).encode(),
        headers={"Content-Type": "application/json"},
        timeout=600,
    )
    assert response.status_code in (200, 201), response.text[:500]
    print(f"# pushed {n_items:,} items in {time.perf_counter() - started:.1f} s", flush=True)
    out = run([PYTHON, "manage.py", "shell", "-c", SETUP_SCRIPT.format(project_id=project["id"], n_users=n_users)], env)
    setup = json.loads(out.strip().splitlines()[-1])
    print(f"# queued {setup['queued']:,} items, {n_users} annotators", flush=True)
    return project["id"], setup["tokens"]


# --- client ----------------------------------------------------------------------------------


class Http:
    """One keep-alive connection (reconnects when the server closes it)."""

    def __init__(self, base: str, headers: dict[str, str]):
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self.conn = None

    def request(self, method: str, path: str, body=None) -> tuple[int, dict | list | None]:
        payload = None if body is None else json.dumps(body)
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, path, body=payload, headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status, (json.loads(data) if data else None)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def true_label(item_key: int) -> str:
    return LABELS[item_key * 2654435761 % 2**32 % len(LABELS)]


def choose(rng: random.Random, item_key: int) -> str:
    return true_label(item_key) if rng.random() < 0.9 else rng.choice(LABELS)


def think(rng: random.Random, think_ms: float) -> None:
    """Reading and deciding: ``think_ms`` on average (uniform 0.5x-1.5x), not measured."""
    if think_ms > 0:
        time.sleep(think_ms / 1000 * rng.uniform(0.5, 1.5))


def quorum_annotator(base, token, project_id, deadline, rng, record, think_ms=0.0):
    http_ = Http(base, {"Authorization": f"Token {token}"})
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        status, body = http_.request("POST", f"/api/v1/projects/{project_id}/next", {})
        record("next", time.perf_counter() - started, status == 200 and body.get("assignment") is not None, status)
        if status != 200 or body["assignment"] is None:
            if status == 200:
                time.sleep(0.05)  # queue empty: nothing to do
            continue
        assignment = body["assignment"]
        think(rng, think_ms)
        label = choose(rng, assignment["item"]["id"])
        started = time.perf_counter()
        status, body = http_.request(
            "POST", f"/api/v1/assignments/{assignment['id']}/annotation", {"label": label, "time_spent_ms": 1000}
        )
        record("submit", time.perf_counter() - started, status == 201, status)


def label_studio_annotator(base, token, project_id, deadline, rng, record, think_ms=0.0):
    http_ = Http(base, {"Authorization": f"Token {token}"})
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        status, body = http_.request("GET", f"/api/projects/{project_id}/next")
        ok = status == 200 and isinstance(body, dict) and "id" in body
        record("next", time.perf_counter() - started, ok, status)
        if not ok:
            if status == 404:
                time.sleep(0.05)
            continue
        think(rng, think_ms)
        label = choose(rng, int(body["data"].get("n", body["id"])))
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        started = time.perf_counter()
        status, _ = http_.request(
            "POST", f"/api/tasks/{body['id']}/annotations?project={project_id}", {"result": result, "lead_time": 1.0}
        )
        record("submit", time.perf_counter() - started, status == 201, status)


def client_process(kind, base, tokens, project_id, duration, start_at, seed, out_queue, think_ms):
    worker = quorum_annotator if kind == "quorum" else label_studio_annotator
    results = {"next": [], "submit": [], "errors": [], "ok": {"next": 0, "submit": 0}}
    lock = threading.Lock()

    def record(op, seconds, ok, status):
        with lock:
            results[op].append(seconds)
            if ok:
                results["ok"][op] += 1
            elif not (op == "next" and status in (200, 404)):
                results["errors"].append(f"{op} HTTP {status}")

    while time.time() < start_at:
        time.sleep(0.005)
    deadline = time.perf_counter() + duration

    def guarded(token, index):
        try:
            worker(base, token, project_id, deadline, random.Random(seed * 1000 + index), record, think_ms)
        except Exception as exc:  # noqa: BLE001 - counted as an error
            with lock:
                results["errors"].append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=guarded, args=(token, i)) for i, token in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out_queue.put(results)


def drive(kind, base, tokens, project_id, duration, procs, think_ms=0.0) -> dict:
    procs = max(1, min(procs, len(tokens)))
    ctx = mp.get_context("fork")
    out_queue = ctx.Queue()
    start_at = time.time() + 1.0
    shards = [tokens[i::procs] for i in range(procs)]
    processes = [
        ctx.Process(
            target=client_process, args=(kind, base, shard, project_id, duration, start_at, i, out_queue, think_ms)
        )
        for i, shard in enumerate(shards)
    ]
    for process in processes:
        process.start()
    merged = {"next": [], "submit": [], "errors": [], "ok": {"next": 0, "submit": 0}}
    for _ in processes:
        part = out_queue.get(timeout=duration + 600)
        merged["next"] += part["next"]
        merged["submit"] += part["submit"]
        merged["errors"] += part["errors"]
        for op in ("next", "submit"):
            merged["ok"][op] += part["ok"][op]
    for process in processes:
        process.join()
    merged["duration"] = duration
    return merged


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summarise(name: str, n: int, result: dict, duplicates: str, think_ms: float = 0.0) -> dict:
    row = {
        "name": name + (f" (think {think_ms / 1000:g} s)" if think_ms else ""),
        "system": name,
        "think_ms": think_ms,
        "annotators": n,
        "annotations_per_s": result["ok"]["submit"] / result["duration"],
        "annotations": result["ok"]["submit"],
        "errors": len(result["errors"]),
        "duplicates": duplicates,
        "deadlocks": result.get("deadlocks"),
    }
    for op in ("next", "submit"):
        for q in (50, 95, 99):
            row[f"{op}_p{q}"] = percentile(result[op], q) * 1000
        row[f"{op}_max"] = max(result[op], default=float("nan")) * 1000
    if result["errors"]:
        sample = sorted(set(result["errors"]))[:5]
        print(f"# {name} {n}: {len(result['errors'])} errors, e.g. {sample}", flush=True)
    return row


def print_table(rows: list[dict]) -> None:
    print()
    print(
        "| system | annotators | annotations/s | next p50 / p95 / p99 (max) ms | submit p50 / p95 / p99 (max) ms"
        " | errors | deadlocks | duplicates |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['name']} | {r['annotators']} | {r['annotations_per_s']:,.1f} ({r['annotations']:,} in all) "
            f"| {r['next_p50']:.1f} / {r['next_p95']:.1f} / {r['next_p99']:.1f} ({r['next_max']:.0f}) "
            f"| {r['submit_p50']:.1f} / {r['submit_p95']:.1f} / {r['submit_p99']:.1f} ({r['submit_max']:.0f}) "
            f"| {r['errors']} | {'not checked' if r['deadlocks'] is None else r['deadlocks']} | {r['duplicates']} |",
            flush=True,
        )


# --- checks afterwards -------------------------------------------------------------------------

#: Seconds an idle PostgreSQL backend may hold its statistics before reporting them (PostgreSQL 15+).
STATS_IDLE_FLUSH_S = 11


def deadlock_count(database_url: str | None) -> int | None:
    """``pg_stat_database.deadlocks`` of the database (None without one)."""
    if not database_url:
        return None
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def quorum_duplicates(database_url: str, project_id: int) -> str:
    import psycopg

    with psycopg.connect(database_url) as conn:
        one = lambda sql: conn.execute(sql, {"p": project_id}).fetchone()[0]  # noqa: E731
        handed_twice = one(
            "SELECT count(*) FROM (SELECT item_id, user_id FROM annotation_assignment WHERE project_id = %(p)s"
            " GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        labelled_twice = one(
            "SELECT count(*) FROM (SELECT item_id, user_id FROM annotation_annotation WHERE project_id = %(p)s"
            " GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        over_slots = one(
            "SELECT count(*) FROM (SELECT a.item_id, count(*) n FROM annotation_annotation a"
            " WHERE a.project_id = %(p)s GROUP BY 1) c JOIN annotation_project p ON p.id = %(p)s"
            " WHERE c.n > p.max_labels_per_item"
        )
        bad_counters = one(
            "SELECT count(*) FROM annotation_queueentry q WHERE q.project_id = %(p)s AND q.labels_taken <>"
            " (SELECT count(*) FROM annotation_assignment s WHERE s.item_id = q.item_id AND s.status = 'leased')"
            " + (SELECT count(*) FROM annotation_annotation a WHERE a.item_id = q.item_id)"
        )
        finalized = one("SELECT count(*) FROM annotation_item WHERE project_id = %(p)s AND status = 'finalized'")
    total = handed_twice + labelled_twice + over_slots + bad_counters
    detail = f"{total}" if total == 0 else f"{total} ({handed_twice}/{labelled_twice}/{over_slots}/{bad_counters})"
    print(f"# quorum: {finalized:,} items finalized; duplicates check: {detail}", flush=True)
    return detail


def label_studio_duplicates(pg_dsn: str, project_id: int, overlap: int) -> str:
    """From Label Studio's database: a task labelled twice by one user, or beyond the overlap."""
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        one = lambda sql: conn.execute(sql, {"p": project_id}).fetchone()[0]  # noqa: E731
        twice = one(
            "SELECT count(*) FROM (SELECT task_id, completed_by_id FROM task_completion WHERE project_id = %(p)s"
            " AND NOT was_cancelled GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        over = one(
            "SELECT count(*) FROM (SELECT task_id FROM task_completion WHERE project_id = %(p)s"
            f" AND NOT was_cancelled GROUP BY 1 HAVING count(*) > {int(overlap)}) d"
        )
    total = twice + over
    return f"{total}" if total == 0 else f"{total} ({twice}/-/{over}/-)"


# --- Label Studio ----------------------------------------------------------------------------


def bench_label_studio(n_items: int, counts: list[int], duration: float, procs: int, thinks=(0.0,)) -> list[dict]:
    """One Label Studio server on PostgreSQL, one project with the same overlap (2), the runs of
    every annotator count one after the other, like ours."""
    sys.path.insert(0, str(ROOT))
    from bench.peers import label_studio as ls

    venv = Path(os.environ.get("LS_BENCH_VENV", ROOT / "bench" / ".venvs" / "label-studio"))
    exe = ls.ensure_venv(venv)
    version = ls.label_studio_version(venv)
    pg_dsn = f"{PG_ADMIN_URL.replace('postgres://', 'postgresql://')}/ls_bench"
    ls.recreate_postgres_db(pg_dsn)
    corpus = texts()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-load-") as tmp:
        with ls.running_label_studio(exe, Path(tmp), free_port(), database="postgres", pg_dsn=pg_dsn) as server:
            project_id = ls.create_project(server.base_url, server.token, LABELS, title="load")
            ls.project_set_overlap(server.base_url, server.token, project_id, 2)
            records = [{"text": f"{corpus[i % len(corpus)]} (#{i})", "n": i} for i in range(n_items)]
            seconds = ls.import_tasks(server.base_url, server.token, project_id, records, timeout=3600)
            print(f"# label-studio {version}: imported {n_items:,} tasks in {seconds:.1f} s", flush=True)
            tokens = ls.create_annotators(server, max(counts))
            for think_ms in thinks:
                for n in counts:
                    result = drive("label-studio", server.base_url, tokens[:n], project_id, duration, procs, think_ms)
                    dups = label_studio_duplicates(pg_dsn, project_id, overlap=2)
                    rows.append(summarise(f"Label Studio {version}", n, result, dups, think_ms))
    return rows


# --- main ------------------------------------------------------------------------------------


def create_annotators(base: str, token: str, project_id: int, n: int) -> list[str]:
    """``n`` annotator accounts on a running server (``POST /api/v1/users``), their tokens from
    ``POST /api/v1/auth/token``."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    stamp = time.strftime("%Y%m%d%H%M%S")
    password = f"Load-{random.SystemRandom().getrandbits(64):x}-pw"
    tokens = []
    for i in range(n):
        username = f"load-{stamp}-{i}"
        body = {"username": username, "email": f"{username}@example.invalid", "password": password}
        response = session.post(f"{base}/api/v1/users", json={**body, "project": project_id, "role": "annotator"})
        assert response.status_code == 201, response.text[:500]
        response = requests.post(f"{base}/api/v1/auth/token", json={"username": username, "password": password})
        assert response.status_code == 200, response.text[:500]
        tokens.append(response.json()["token"])
    return tokens


def create_project(base: str, token: str, n_items: int) -> int:
    """A project on a running server with ``n_items`` pushed; its own loop fills the queue."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    response = session.post(
        f"{base}/api/v1/projects", json={"name": f"load {time.strftime('%H:%M:%S')}", "labels": LABELS}, timeout=60
    )
    assert response.status_code == 201, response.text[:500]
    project_id = response.json()["id"]
    corpus = texts()
    records = [{"external_id": f"r-{i}", "text": f"{corpus[i % len(corpus)]} (#{i})"} for i in range(n_items)]
    response = session.post(f"{base}/api/v1/projects/{project_id}/items", json=records, timeout=600)
    assert response.status_code in (200, 201), response.text[:500]
    print(f"# pushed {n_items:,} items to project {project_id}", flush=True)
    return project_id


def measure(base, tokens, project_id, args, database_url, think_ms, n) -> dict:
    """One run: ``n`` annotators for --duration seconds; errors, deadlocks and duplicates counted."""
    before = deadlock_count(database_url)
    result = drive("quorum", base, tokens[:n], project_id, args.duration, args.client_procs, think_ms)
    if database_url:
        time.sleep(STATS_IDLE_FLUSH_S)
        result["deadlocks"] = deadlock_count(database_url) - before
        dups = quorum_duplicates(database_url, project_id)
    else:
        dups = "not checked"
    return summarise("Quorum", n, result, dups, think_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--annotators", default="8,32")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per annotator count")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread when > 1)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (annotators are threads)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14", help="broker of the local server and worker")
    parser.add_argument("--no-worker", action="store_true", help="no Celery worker beside the local server")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the local worker at this nice level (web requests first when they share the cores)",
    )
    parser.add_argument("--base-url", help="measure a running server instead of starting one (nothing is dropped)")
    parser.add_argument("--token", help="with --base-url: a staff (or project admin) API token")
    parser.add_argument("--project", type=int, help="with --base-url: an existing project (default: create one)")
    parser.add_argument(
        "--database-url", help="with --base-url: the server's database, for the deadlock/duplicate checks"
    )
    parser.add_argument("--label-studio", action="store_true", help="also measure Label Studio")
    parser.add_argument("--label-studio-items", type=int, default=None, help="items for Label Studio (default --items)")
    parser.add_argument(
        "--think-ms",
        default="0",
        help="comma-separated mean think times per item in ms (0: back-to-back requests, the saturation test)",
    )
    parser.add_argument("--skip-quorum", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.annotators.split(",")]
    thinks = [float(t) for t in args.think_ms.split(",")]
    rows = []
    if args.base_url:
        if not args.token:
            parser.error("--base-url needs --token")
        base = args.base_url.rstrip("/")
        print(
            f"# running server {base}; {args.client_procs} client processes; {args.duration:.0f} s per run", flush=True
        )
        project_id = args.project or create_project(base, args.token, args.items)
        tokens = create_annotators(base, args.token, project_id, max(counts))
        for think_ms in thinks:
            for n in counts:
                rows.append(measure(base, tokens, project_id, args, args.database_url, think_ms, n))
        print_table(rows)
        return
    worker_note = "no Celery worker" if args.no_worker else f"1 Celery worker on {args.broker}"
    print(
        f"# {os.cpu_count()} CPUs; gunicorn {args.workers} workers x {args.threads} threads; PostgreSQL on loopback;"
        f" {worker_note}; {args.client_procs} client processes; {args.duration:.0f} s per run",
        flush=True,
    )
    if not args.skip_quorum:
        broker = None if args.no_worker else args.broker
        with tempfile.TemporaryDirectory(prefix="quorum-load-") as tmp:
            with quorum_server(Path(tmp), args.workers, args.threads, broker) as (base, token, env, database_url):
                project_id, tokens = prepare_quorum(base, token, env, args.items, max(counts))
                with nullcontext() if args.no_worker else celery_worker(env, args.worker_nice):
                    for think_ms in thinks:
                        for n in counts:
                            rows.append(measure(base, tokens, project_id, args, database_url, think_ms, n))
                print_table(rows)
    if args.label_studio:
        rows += bench_label_studio(
            args.label_studio_items or args.items, counts, args.duration, args.client_procs, thinks
        )
        print_table(rows)
        ours = {(r["annotators"], r["think_ms"]): r for r in rows if r["system"] == "Quorum"}
        for r in rows:
            key = (r["annotators"], r["think_ms"])
            if r["system"] != "Quorum" and key in ours and r["annotations_per_s"] > 0:
                q = ours[key]
                print(
                    f"# {r['annotators']} annotators, think {r['think_ms'] / 1000:g} s: throughput {q['annotations_per_s'] / r['annotations_per_s']:.1f}x,"
                    f" next p99 {r['next_p99'] / q['next_p99']:.1f}x lower, submit p99"
                    f" {r['submit_p99'] / q['submit_p99']:.1f}x lower than {r['name']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
