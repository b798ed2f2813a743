#!/usr/bin/env python
"""One check of Quorum's GPU paths, for a maintainer with a CUDA machine: about 3–5 minutes, one table.

    .venv/bin/python bench/gpu_check.py                 # CUDA when present, else the CPU
    .venv/bin/python bench/gpu_check.py --device cpu --quick    # a smoke run (what the test suite runs)

Sections (each a row or a few in the table; a failed section is reported and the others still run):

* **parity**: the CUDA parity tests of the suite (``pytest -k cuda`` over the modules that hold them:
  committee, strategies, encoders, semi-supervised head, multi-label head): GPU results equal to the CPU
  ones within the tolerances the tests state. On a machine without CUDA they are skipped, and the row
  says so.
* **embed**: all-MiniLM-L6-v2 through ``acquisition.encoders.get_encoder`` on the device (fp16 on CUDA),
  texts/s over ``--texts`` texts (banking77's when ``../shared/datasets`` is there, else generated
  ticket-like sentences).
* **score**: every single-label strategy over a synthetic ``--pool`` × 384 pool (default 1,000,000)
  with 77 classes, batch 50: the per-item strategies through ``HeadCommittee.score`` + top-k (one head;
  five bootstrap heads for BALD and QBC), MSAL and core-set through ``strategies.select_batch`` with
  ``--labelled`` labelled points (10,000) for the distance term, ``random``.
* **train**: the heads a training job fits on the device, on 2,000 labels of the pool: the plain
  logistic head (``HeadCommittee``), the semi-supervised head (``LabelSpreadingHead`` with 10,000
  unlabelled items, its cross-validated choices included) and the one-vs-rest multi-label head; and a
  fine-tuning job (``FineTunedClassifier``, one epoch over ``--finetune-texts`` texts), CUDA only unless
  ``--finetune-on-cpu``.

Printed: one row per check, ``section | check | device | figure | status`` with status ``ok``, ``FAILED
(<reason>)`` or ``skipped (<reason>)``; the exit status is 1 when any check failed. The CPU build in CI
never has CUDA: every path timed here also has a CPU fallback, tested by the suite on every run.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acquisition import strategies as S  # noqa: E402
from acquisition.committee import HeadCommittee  # noqa: E402
from acquisition.encoders import get_encoder, resolve_device  # noqa: E402

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
DATASET = ROOT.parent / "shared" / "datasets" / "banking77"
#: The test modules holding CUDA parity tests (``pytest -k cuda`` selects them).
PARITY_MODULES = (
    "tests/test_committee.py",
    "tests/test_strategies.py",
    "tests/test_encoders.py",
    "tests/test_semisupervised.py",
    "tests/test_multilabel_model.py",
)
PER_ITEM = ("margin", "entropy", "least_confidence")
COMMITTEE = ("bald", "qbc")


class Table:
    """The rows of the report, printed as they come and once more at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, section: str, check: str, device: str, figure: str, status: str = "ok") -> None:
        row = (section, check, device, figure, status)
        self.rows.append(row)
        print("  " + " | ".join(row), flush=True)

    @property
    def failed(self) -> bool:
        return any(status.startswith("FAILED") for *_, status in self.rows)

    def print(self) -> None:
        header = ("section", "check", "device", "figure", "status")
        widths = [max(len(str(r[i])) for r in [header, *self.rows]) for i in range(5)]
        line = "  ".join
        print()
        print(line(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        print(line("-" * w for w in widths))
        for row in self.rows:
            print(line(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], object]) -> tuple[float, object]:
    _sync(device)
    started = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - started, out


def guarded(table: Table, section: str, check: str, device: str, fn: Callable[[], str]) -> None:
    """Run one check; a failure becomes a FAILED row (with its reason) and the report goes on."""
    try:
        table.add(section, check, device, fn())
    except Exception as exc:  # one broken path must not hide the others
        traceback.print_exc()
        table.add(section, check, device, "-", f"FAILED ({type(exc).__name__}: {str(exc)[:120]})")


# ------------------------------------------------------------------------------------------ parity
def parity(table: Table, quick: bool) -> None:
    modules = [m for m in PARITY_MODULES if (ROOT / m).exists()]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", *modules]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", tail)}
    figure = f"{counts.get('passed', 0)} passed, {counts.get('skipped', 0)} skipped in {seconds:.0f} s"
    if done.returncode not in (0, 5) or counts.get("failed") or counts.get("error") or counts.get("errors"):
        table.add("parity", "CUDA parity tests", "cuda", figure, f"FAILED ({tail[:120]})")
    elif not torch.cuda.is_available():
        table.add("parity", "CUDA parity tests", "cuda", figure, "skipped (no CUDA device)")
    else:
        table.add("parity", "CUDA parity tests", "cuda", figure)


# ------------------------------------------------------------------------------------------- embed
def sample_texts(n: int, seed: int = 0) -> list[str]:
    path = DATASET / "train.csv"
    if path.exists():
        import csv

        with path.open(newline="", encoding="utf-8") as handle:
            texts = [row["text"] for row in csv.DictReader(handle)]
        rng = random.Random(seed)
        return [texts[rng.randrange(len(texts))] for _ in range(n)]
    rng = random.Random(seed)
    subjects = ["my card", "the transfer", "a refund", "my account", "the app", "a payment", "the exchange rate"]
    verbs = ["has not arrived", "was declined", "shows twice", "is blocked", "looks wrong", "failed again"]
    tails = ["since Monday", "after I topped up", "while abroad", "and I need it today", "", "for the third time"]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(tails)}".strip() for _ in range(n)]


def embed(table: Table, device: str, n: int, name: str = ENCODER) -> None:
    texts = sample_texts(n)

    def run() -> str:
        encoder = get_encoder(name, device=device)
        encoder.encode(texts[:64])  # load and warm up
        seconds, vectors = timed(device, lambda: encoder.encode(texts))
        assert vectors.shape == (n, 384) and np.isfinite(vectors).all()
        precision = "fp16" if device.startswith("cuda") else "cpu default"
        return f"{n / seconds:,.0f} texts/s ({n:,} texts, {precision})"

    guarded(table, "embed", name.split("/")[-1], device, run)


# ------------------------------------------------------------------------------------------- score
def synthetic_pool(n: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, centres, y)``: unit vectors around ``classes`` random centres (chunked, float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, n)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centres[y[start:stop]] + 1.5 * rng.standard_normal((stop - start, dim)).astype(np.float32)
        X[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X, centres, y


def score(table: Table, device: str, n: int, labelled: int, k: int = 50) -> np.ndarray:
    X, _, y = synthetic_pool(n, 384, 77)
    rng = np.random.default_rng(1)
    seen = rng.choice(n, size=min(2000, n // 2), replace=False)
    head = HeadCommittee(n_members=1, bootstrap=False, device=device, random_state=0).fit(
        X[seen], y[seen], classes=np.arange(77)
    )
    committee = HeadCommittee(n_members=5, device=device, random_state=0).fit(X[seen], y[seen], classes=np.arange(77))
    for name in (*PER_ITEM, *COMMITTEE):
        model = committee if name in COMMITTEE else head

        def run(name=name, model=model) -> str:
            seconds, picks = timed(device, lambda: S.top_k(model.score(X, name), k))
            assert len(picks) == k
            return f"{seconds:.2f} s for {n:,} items"

        guarded(table, "score", name, device, run)
    labelled_rows = rng.choice(n, size=min(labelled, n // 4), replace=False)
    candidates = np.setdiff1d(np.arange(n), labelled_rows)
    for name in ("msal", "coreset"):

        def run(name=name) -> str:
            def select():
                scores = head.score(X[candidates], "margin") if name == "msal" else None
                return S.select_batch(
                    name,
                    k,
                    scores=scores,
                    embeddings=X[candidates],
                    labelled_embeddings=X[labelled_rows],
                    device=device,
                )

            seconds, selection = timed(device, select)
            assert len(selection.indices) == k
            return f"{seconds:.2f} s for {len(candidates):,} items, {len(labelled_rows):,} labelled"

        guarded(table, "score", name, device, run)

    def uniform() -> str:
        seconds, picks = timed(device, lambda: S.select_batch("random", k, scores=np.zeros(n), seed=0))
        assert len(picks.indices) == k
        return f"{seconds:.3f} s for {n:,} items"

    guarded(table, "score", "random", device, uniform)
    return X


# ------------------------------------------------------------------------------------------- train
def train(table: Table, device: str, quick: bool, finetune_texts: int, finetune_on_cpu: bool) -> None:
    n_labels, n_unlabelled = (200, 600) if quick else (2_000, 10_000)
    X, centres, y = synthetic_pool(n_labels + n_unlabelled, 384, 77, seed=2)
    labels, pool = slice(0, n_labels), slice(n_labels, None)

    def logistic() -> str:
        seconds, _ = timed(
            device,
            lambda: HeadCommittee(n_members=1, bootstrap=False, device=device).fit(
                X[labels], y[labels], classes=np.arange(77)
            ),
        )
        return f"{seconds:.2f} s ({n_labels:,} labels)"

    def semi() -> str:
        from acquisition.semisupervised import LabelSpreadingHead

        head = LabelSpreadingHead(device=device, max_unlabelled=n_unlabelled)
        seconds, _ = timed(device, lambda: head.fit(X[labels], y[labels], X_unlabelled=X[pool], classes=np.arange(77)))
        return f"{seconds:.2f} s ({n_labels:,} labels, {n_unlabelled:,} unlabelled, cross-validated choices)"

    def one_vs_rest() -> str:
        from acquisition.multilabel import OneVsRestHead

        rng = np.random.default_rng(3)
        Y = np.zeros((n_labels, 28), dtype=np.int64)
        Y[np.arange(n_labels), y[labels] % 28] = 1
        Y[rng.random((n_labels, 28)) < 0.03] = 1
        head = OneVsRestHead(weight_decay=[0.01, 0.1, 1.0], device=device)
        seconds, _ = timed(device, lambda: head.fit(X[labels], Y, X_unlabelled=X[pool]))
        return f"{seconds:.2f} s ({n_labels:,} tag sets, 28 tags, pool thresholds)"

    guarded(table, "train", "logistic head", device, logistic)
    guarded(table, "train", "semi-supervised head", device, semi)
    guarded(table, "train", "one-vs-rest head", device, one_vs_rest)
    if not device.startswith("cuda") and not finetune_on_cpu:
        table.add("train", "fine-tune", device, "-", "skipped (CUDA only; --finetune-on-cpu to run it here)")
        return

    def finetune() -> str:
        from acquisition.finetune import FineTunedClassifier

        texts = sample_texts(finetune_texts, seed=4)
        targets = np.arange(finetune_texts) % 5
        model = FineTunedClassifier(epochs=1, device=device, random_state=0)
        seconds, _ = timed(device, lambda: model.fit(texts, targets, classes=np.arange(5)))
        assert np.isfinite(model.losses_).all()
        return f"{seconds:.1f} s (1 epoch, {finetune_texts:,} texts)"

    guarded(table, "train", "fine-tune", device, finetune)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:1 or cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every section")
    parser.add_argument("--pool", type=int, default=None, help="items scored (default 1,000,000; --quick 20,000)")
    parser.add_argument("--labelled", type=int, default=10_000, help="labelled points of MSAL's distance term")
    parser.add_argument("--texts", type=int, default=None, help="texts embedded (default 20,000; --quick 200)")
    parser.add_argument("--finetune-texts", type=int, default=None, help="default 2,000; --quick 64")
    parser.add_argument("--finetune-on-cpu", action="store_true")
    parser.add_argument("--encoder", default=ENCODER, help=f"the encoder the embed row times (default {ENCODER})")
    parser.add_argument("--skip", default="", help="sections to leave out, e.g. parity,train")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = str(resolve_device(args.device))
    pool = args.pool or (20_000 if args.quick else 1_000_000)
    texts = args.texts or (200 if args.quick else 20_000)
    finetune_texts = args.finetune_texts or (64 if args.quick else 2_000)
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda or '-'}, GPU: {gpu}; device {device}")
    print(f"CPU threads {torch.get_num_threads()}, load average {open('/proc/loadavg').read().split()[:3]}")
    table = Table()
    started = time.perf_counter()
    if "parity" not in skip:
        parity(table, args.quick)
    if "embed" not in skip:
        embed(table, device, texts, args.encoder)
    if "score" not in skip:
        score(table, device, pool, min(args.labelled, pool // 4))
    if "train" not in skip:
        train(table, device, args.quick, finetune_texts, args.finetune_on_cpu)
    table.print()
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
