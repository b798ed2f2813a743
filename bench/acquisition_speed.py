"""Acquisition speed: scoring + top-k on a synthetic 1M × 384 pool, Quorum next to modAL / small-text.

    .venv/bin/python bench/acquisition_speed.py [--n 1000000] [--labelled 10000] [--k 50] [--no-peers]

What is timed (wall seconds, best of ``--repeat`` for the cheap rows) and the peak RSS growth during the
call (``/proc/self/status`` VmHWM after resetting it through ``/proc/self/clear_refs``; covers NumPy and
torch allocations alike):

* **floor**: the logits matrix product alone, ``X @ W + b`` over the whole pool (one model, 77 classes).
* entropy / margin / least confidence: one logistic model, ``HeadCommittee.score`` (chunked: GEMM, softmax,
  score) + exact top-k of 50.
* BALD / QBC: a committee of 5 bootstrap logistic heads, scored in one GEMM per chunk.
* MSAL: ``margin + α · min distance to 10,000 labelled points``, greedy in-batch update; the diversity term
  (1M × 10k min distances, GEMM form) is timed on its own, then an incremental round: the cache updated with
  50 newly labelled points + re-scoring + greedy selection.
* core-set: greedy k-center from the min-distance cache.

Peers run the same query on the same model and rows in their own virtualenv (``bench/peers/al_queries.py``;
created on first use). Peers whose query is quadratic-ish (modAL's ranked batch and small-text's greedy
core-set recompute distances to the whole labelled set at every pick; modAL's vote entropy counts votes in
a Python loop) are measured on the first ``--peer-n-*`` rows and scaled linearly in n (their cost is linear
in the pool size for a fixed labelled set and batch); the table says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquisition import strategies as S  # noqa: E402
from acquisition.committee import HeadCommittee  # noqa: E402
from bench.peers import al_queries  # noqa: E402

# ----------------------------------------------------------------------------- measuring


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(fn, repeat: int = 1):
    """(result, best wall seconds, peak RSS growth in MB of the first run)."""
    best, peak, out = float("inf"), float("nan"), None
    for i in range(repeat):
        base = _status_mb("VmRSS")
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            peak = _status_mb("VmHWM") - base
    return out, best, peak


# ----------------------------------------------------------------------------- data


def synthetic(n: int, n_labelled: int, dim: int, classes: int, seed: int = 0):
    """Unit-norm embeddings around ``classes`` centres (like sentence embeddings), pool and labelled set."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    centres /= centres.norm(dim=1, keepdim=True)

    def draw(m):
        y = torch.randint(0, classes, (m,), generator=g)
        x = centres[y] + torch.randn(m, dim, generator=g) * (0.9 / dim**0.5)
        return x / x.norm(dim=1, keepdim=True), y

    pool, _ = draw(n)
    lab, y_lab = draw(n_labelled)
    return pool.contiguous(), lab.contiguous(), y_lab.numpy()


# ----------------------------------------------------------------------------- peers


def run_peer(py, data_dir: pathlib.Path, query: str, n: int, k: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [str(py), str(ROOT / "bench" / "peers" / "al_queries.py")]
        cmd += ["--data", str(data_dir), "--query", query, "--n", str(n), "--k", str(k), "--out", out.name]
        env = {k_: v for k_, v in os.environ.items() if k_ not in ("PYTHONPATH", "VIRTUAL_ENV")}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if r.returncode != 0:
            return {"error": (r.stderr or r.stdout)[-500:]}
        return json.loads(pathlib.Path(out.name).read_text())


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Acquisition speed: Quorum vs modAL / small-text")
    ap.add_argument("--n", type=int, default=1_000_000, help="pool size (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--classes", type=int, default=77)
    ap.add_argument("--labelled", type=int, default=10_000, help="labelled set for MSAL / core-set")
    ap.add_argument("--train", type=int, default=2_000, help="labelled points the models are fitted on")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--k", type=int, default=50, help="batch size")
    ap.add_argument("--chunk", type=int, default=S.DEFAULT_CHUNK)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the cheap Quorum rows")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--peer-n-uncertainty", type=int, default=1_000_000)
    ap.add_argument("--peer-n-bald", type=int, default=200_000)
    ap.add_argument("--peer-n-qbc", type=int, default=100_000)
    ap.add_argument("--peer-n-diversity", type=int, default=500, help="modAL ranked batch, small-text core-set")
    args = ap.parse_args(argv)
    n, k = args.n, args.k
    torch.manual_seed(0)
    print(
        f"# acquisition speed: pool {n:,} × {args.dim} float32, {args.classes} classes, batch {k}, "
        f"|L| = {args.labelled:,}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    t0 = time.perf_counter()
    pool, lab, y_lab = synthetic(n, args.labelled, args.dim, args.classes)
    X_train, y_train = lab[: args.train], y_lab[: args.train]
    single, fit1, _ = measure(
        lambda: HeadCommittee(n_members=1, bootstrap=False).fit(X_train, y_train, n_classes=args.classes)
    )
    committee, fit5, _ = measure(
        lambda: HeadCommittee(n_members=args.members).fit(X_train, y_train, n_classes=args.classes)
    )
    print(
        f"# data {time.perf_counter() - t0 - fit1 - fit5:.1f} s; fit on {args.train:,} × {args.dim}: "
        f"1 head {fit1:.2f} s, {args.members} heads {fit5:.2f} s",
        flush=True,
    )

    quorum: dict[str, tuple[float, float, np.ndarray]] = {}

    W, b = single.weights_["W"], single.weights_["b"]
    _, floor_s, floor_mb = measure(lambda: torch.addmm(b, pool, W), args.repeat)
    print(f"# floor (logits X @ W + b, {n:,} × {args.dim} × {args.classes}): {floor_s:.3f} s", flush=True)
    W5, b5 = committee.weights_["W"], committee.weights_["b"]
    _, floor5_s, floor5_mb = measure(lambda: torch.addmm(b5, pool, W5), args.repeat)
    print(
        f"# floor, {args.members} members (one GEMM to {args.members * args.classes} logits): {floor5_s:.3f} s",
        flush=True,
    )

    peers: dict[str, dict] = {}
    tmp = tempfile.TemporaryDirectory(prefix="acq-bench-")
    data = pathlib.Path(tmp.name)
    py = None
    if not args.no_peers:
        py = al_queries.ensure_venv()
        peer_max = min(n, max(args.peer_n_uncertainty, args.peer_n_bald, args.peer_n_qbc, args.peer_n_diversity))
        np.save(data / "pool.npy", pool[:peer_max].numpy())
        np.save(data / "labelled.npy", lab.numpy())
        Wm = committee.weights_["W"].view(args.dim, args.members, args.classes).permute(1, 0, 2)
        bm = committee.weights_["b"].view(args.members, args.classes)
        # member 0: the single model; members 1..M: the committee
        np.save(data / "W.npy", np.concatenate([W[None].numpy(), Wm.numpy()]))
        np.save(data / "b.npy", np.concatenate([b[None].numpy(), bm.numpy()]))

    def peer(key: str, query: str, peer_n: int) -> None:
        """Run the peer's query right after Quorum's, so both see about the same machine load."""
        if py is None:
            return
        peer_n = min(n, peer_n)
        res = run_peer(py, data, query, peer_n, k)
        peers[key] = res
        if "error" in res:
            print(f"  peer {query}: FAILED {res['error']}", flush=True)
        else:
            print(
                f"  peer {query} at n={peer_n:,}: {res['seconds']:.2f} s, peak +{res['peak_rss_mb']:.0f} MB", flush=True
            )

    def uncertainty(model, name):
        def run():
            sc = model.score(pool, name, chunk_size=args.chunk)
            return S.select_batch(name, k, scores=sc).indices

        return run

    for name, model in (
        ("entropy", single),
        ("margin", single),
        ("least_confidence", single),
        ("bald", committee),
        ("qbc", committee),
    ):
        idx, sec, mb = measure(uncertainty(model, name), args.repeat)
        quorum[name] = (sec, mb, idx)
        print(f"  quorum {name}: {sec:.3f} s, peak +{mb:.0f} MB", flush=True)
        peer_n = {"bald": args.peer_n_bald, "qbc": args.peer_n_qbc}.get(name, args.peer_n_uncertainty)
        peer(name, {"least_confidence": "least_conf"}.get(name, name), peer_n)

    # MSAL: first full run (diversity term from scratch), then an incremental round
    d, div_s, div_mb = measure(lambda: S.min_distances(pool, lab, chunk_size=args.chunk))
    print(f"  quorum MSAL diversity term {n:,} × {args.labelled:,}: {div_s:.1f} s, peak +{div_mb:.0f} MB", flush=True)

    u, u_s, u_mb = measure(lambda: single.score(pool, "margin", chunk_size=args.chunk))
    msal_idx, greedy_s, greedy_mb = measure(
        lambda: S.select_batch("msal", k, scores=u, embeddings=pool, min_dist=d).indices
    )
    quorum["msal_first"] = (u_s + div_s + greedy_s, max(u_mb, div_mb, greedy_mb), msal_idx)
    new = pool[msal_idx]
    d2, upd_s, upd_mb = measure(lambda: S.update_min_distances(d, pool, new, chunk_size=args.chunk))
    _, greedy2_s, greedy2_mb = measure(
        lambda: S.select_batch("msal", k, scores=u, embeddings=pool, min_dist=d2).indices
    )
    quorum["msal_round"] = (u_s + upd_s + greedy2_s, max(u_mb, upd_mb, greedy2_mb), None)
    print(
        f"  quorum MSAL first run {u_s + div_s + greedy_s:.1f} s = margin scoring {u_s:.2f} + diversity "
        f"{div_s:.1f} + greedy batch {greedy_s:.2f}; incremental round {u_s + upd_s + greedy2_s:.1f} s = "
        f"scoring {u_s:.2f} + cache update (+{k}) {upd_s:.2f} + greedy {greedy2_s:.2f}",
        flush=True,
    )
    cs_idx, cs_s, cs_mb = measure(lambda: S.select_batch("coreset", k, embeddings=pool, min_dist=d).indices)
    quorum["coreset_first"] = (div_s + cs_s, max(div_mb, cs_mb), cs_idx)
    quorum["coreset_round"] = (cs_s, cs_mb, cs_idx)
    print(f"  quorum core-set greedy from the cache: {cs_s:.2f} s", flush=True)

    peer("msal_first", "ranked_batch", args.peer_n_diversity)
    peer("coreset_first", "coreset", args.peer_n_diversity)
    tmp.cleanup()
    _print_table(args, quorum, peers, (floor_s, floor_mb, floor5_s, floor5_mb), div_s, upd_s)
    return 0


PEER_NAMES = {
    "entropy": "modAL entropy_sampling",
    "margin": "modAL margin_sampling",
    "least_confidence": "modAL uncertainty_sampling",
    "bald": "small-text _bald (5 members)",
    "qbc": "modAL vote_entropy_sampling",
    "msal_first": "modAL uncertainty_batch_sampling",
    "coreset_first": "small-text greedy_coreset",
}
LABELS = {
    "entropy": "entropy (1 model)",
    "margin": "margin (1 model)",
    "least_confidence": "least confidence (1 model)",
    "bald": "BALD (5 members)",
    "qbc": "QBC vote entropy (5 members)",
    "msal_first": "MSAL, first full run",
    "msal_round": "MSAL, incremental round (+50)",
    "coreset_first": "core-set, first full run",
    "coreset_round": "core-set, round from cache",
}


def _print_table(args, quorum, peers, floors, div_s, upd_s) -> None:
    floor_s, floor_mb, floor5_s, floor5_mb = floors
    n = args.n
    print()
    print(
        f"## Acquisition speed, pool {n:,} × {args.dim}, {args.classes} classes, batch {args.k}, "
        f"|L| = {args.labelled:,} (wall seconds; peak = RSS growth during the call)"
    )
    print()
    head = (
        "| query | Quorum s | Quorum peak MB | × floor | peer | peer measured at n | peer s (at n) | "
        f"peer s scaled to {n:,} | peer peak MB | speed-up |"
    )
    print(head)
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    print(f"| floor: logits matmul alone, 1 model | {floor_s:.3f} | {floor_mb:.0f} | 1.00 | | | | | | |")
    print(
        f"| floor: logits matmul alone, {args.members} members | {floor5_s:.3f} | {floor5_mb:.0f} | 1.00 | | | | | | |"
    )
    for key in (
        "entropy",
        "margin",
        "least_confidence",
        "bald",
        "qbc",
        "msal_first",
        "msal_round",
        "coreset_first",
        "coreset_round",
    ):
        sec, mb, idx = quorum[key]
        ratio = ""
        if key in ("entropy", "margin", "least_confidence"):
            ratio = f"{sec / floor_s:.2f}"
        elif key in ("bald", "qbc"):
            ratio = f"{sec / floor5_s:.2f}"
        peer = peers.get(key)
        if peer and "error" not in peer:
            scaled = peer["seconds"] * n / peer["n"]
            same = ""
            if peer["n"] == n and idx is not None and key in ("entropy", "margin", "least_confidence"):
                same = " (same picks)" if set(peer["indices"]) == set(idx.tolist()) else " (other picks)"
            scale_note = "" if peer["n"] == n else " (scaled)"
            print(
                f"| {LABELS[key]} | {sec:.3f} | {mb:.0f} | {ratio} | {PEER_NAMES[key]}{same} | {peer['n']:,} | "
                f"{peer['seconds']:.2f} | {scaled:.2f}{scale_note} | {peer['peak_rss_mb']:.0f} | "
                f"{scaled / sec:.1f}x |"
            )
        else:
            err = " (failed)" if peer else ""
            print(f"| {LABELS[key]} | {sec:.3f} | {mb:.0f} | {ratio} | {PEER_NAMES.get(key, '')}{err} | | | | | |")
    print()
    print(
        f"MSAL diversity term (min distance of {n:,} items to {args.labelled:,} labelled, GEMM form): "
        f"{div_s:.1f} s first full run; incremental update with {args.k} new labelled points: {upd_s:.2f} s"
    )
    versions = next((p["versions"] for p in peers.values() if "versions" in p), None)
    if versions:
        print("peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(
        "peer rows marked (scaled) ran on the first rows of the same pool and are scaled linearly in n; "
        "peer peak MB is at the measured n."
    )


if __name__ == "__main__":
    sys.exit(main())
