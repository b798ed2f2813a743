#!/usr/bin/env python
"""Sentence-encoding throughput (texts/s) of Quorum's all-MiniLM-L6-v2 encoder.

Texts are BANKING77 training queries (../shared/datasets/banking77/train.csv) when present,
otherwise synthetic banking-like sentences. For each device (the CPU, and CUDA in fp16 when a GPU
is present) and each batch size, the encoder is warmed up and then encodes the first --n texts;
the peer line is sentence-transformers' own ``SentenceTransformer.encode`` on the same model,
texts, device and batch size.

  python bench/embed.py [--n 2000] [--batch-sizes 32,64,128] [--devices cpu,cuda] [--threads N]
                        [--repeats 1] [--no-peer]

Timings on a shared machine are noisy: compare lines from the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from banking77 import BANKING77_DIR, read_texts  # noqa: E402

from acquisition.encoders import get_encoder  # noqa: E402

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    subjects = ["my card", "the transfer", "my top-up", "the refund", "my account", "the payment", "my PIN"]
    verbs = ["has not arrived", "was declined", "is pending", "failed", "was charged twice", "is blocked"]
    tails = ["", " since Monday", " and I need it today", " after I changed my address", " in another currency"]
    return [
        f"{rng.choice(['Why', 'How come', 'Help,'])} {rng.choice(subjects)} {rng.choice(verbs)}{rng.choice(tails)}?"
        for _ in range(n)
    ]


def corpus(n: int) -> tuple[list[str], str]:
    path = BANKING77_DIR / "train.csv"
    if path.is_file():
        texts = read_texts(path)
        source = f"BANKING77 train ({path})"
    else:
        texts = synthetic_texts(n)
        source = "synthetic banking sentences (../shared/datasets/banking77 not found)"
    reps = -(-n // len(texts))
    return (texts * reps)[:n], source


def timed(fn, repeats: int, sync) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="texts per timed run (default 2000)")
    parser.add_argument("--batch-sizes", default="32,64,128", help="comma-separated (default 32,64,128)")
    parser.add_argument("--devices", default="auto", help="'auto' (CPU, plus CUDA when present) or e.g. cpu,cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per line; the best is reported")
    parser.add_argument("--no-peer", action="store_true", help="skip the SentenceTransformer.encode lines")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    texts, source = corpus(args.n)
    mean_chars = float(np.mean([len(t) for t in texts]))

    if args.devices == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]

    print(f"encoder: {ENCODER}   texts: {len(texts):,} from {source}, mean {mean_chars:.0f} chars")
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, os.cpu_count() {os.cpu_count()}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    else:
        print("GPU: none (torch.cuda.is_available() is False) - CUDA lines skipped")
    print()
    print(f"{'device':<8} {'precision':<9} {'batch':>5}  {'quorum texts/s':>14}  {'peer texts/s':>12}  {'ratio':>5}")

    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device:<8} skipped: no CUDA device on this machine")
            continue
        encoder = get_encoder(ENCODER, device=device)
        dev = encoder.device
        sync = (lambda dev=dev: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        precision = "fp16" if dev.type == "cuda" else "fp32"
        model = encoder._model  # the same loaded SentenceTransformer, for the peer line
        encoder.encode(texts[: max(batch_sizes)])  # warm-up: allocator, kernels, tokenizer caches
        for bs in batch_sizes:
            ours = timed(lambda bs=bs, enc=encoder: enc.encode(texts, batch_size=bs), args.repeats, sync)
            peer_col, ratio_col = "-", "-"
            if not args.no_peer:
                peer = timed(
                    lambda bs=bs, model=model: model.encode(
                        texts, batch_size=bs, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
                    ),
                    args.repeats,
                    sync,
                )
                peer_col, ratio_col = f"{len(texts) / peer:,.0f}", f"{peer / ours:.2f}"
            print(f"{str(dev):<8} {precision:<9} {bs:>5}  {len(texts) / ours:>14,.0f}  {peer_col:>12}  {ratio_col:>5}")
    print()
    print("ratio = peer time / Quorum time (>1: Quorum faster).")
    print("On a shared machine the figures move with its load: compare lines of one run, and rerun.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
