"""BANKING77 for the benchmarks: ``../shared/datasets/banking77`` (train = pool, test = evaluation).

Files have columns ``text,category``; some texts hold quoted newlines, so they are read with the
csv module. Labels are indices into ``categories.json`` (77 intents).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BANKING77_DIR = ROOT.parent / "shared" / "datasets" / "banking77"


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray  # int64 class indices


@dataclass(frozen=True)
class Banking77:
    train: Split
    test: Split
    categories: list[str]
    path: Path


def read_texts(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def _read_split(path: Path, index: dict[str, int]) -> Split:
    texts: list[str] = []
    labels: list[int] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            texts.append(row["text"])
            labels.append(index[row["category"]])
    return Split(texts, np.asarray(labels, dtype=np.int64))


def banking77_available(path: Path = BANKING77_DIR) -> bool:
    return all((path / name).is_file() for name in ("train.csv", "test.csv"))


def load_banking77(path: Path = BANKING77_DIR) -> Banking77:
    path = Path(path)
    categories_file = path / "categories.json"
    if categories_file.is_file():
        categories = list(json.loads(categories_file.read_text(encoding="utf-8")))
    else:
        with open(path / "train.csv", newline="", encoding="utf-8") as handle:
            categories = sorted({row["category"] for row in csv.DictReader(handle)})
    index = {name: i for i, name in enumerate(categories)}
    return Banking77(_read_split(path / "train.csv", index), _read_split(path / "test.csv", index), categories, path)


def cached_embeddings(
    data: Banking77,
    encoder_name: str = "sentence-transformers/all-MiniLM-L6-v2",
    device: str = "auto",
    cache_dir: Path = ROOT / "var" / "cache",
    log=print,
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) embeddings, encoded once and kept as .npy under ``var/cache/``.

    The file name carries the encoder name and a digest of the texts, so a changed dataset or
    encoder never reuses stale vectors.
    """
    import hashlib
    import re
    import time

    from acquisition.encoders import get_encoder

    slug = re.sub(r"[^A-Za-z0-9]+", "-", encoder_name).strip("-")
    out: list[np.ndarray] = []
    for split_name, split in (("train", data.train), ("test", data.test)):
        digest = hashlib.sha256("\x1e".join(split.texts).encode("utf-8")).hexdigest()[:12]
        path = Path(cache_dir) / f"banking77-{split_name}-{slug}-{digest}.npy"
        if path.is_file():
            vectors = np.load(path)
        else:
            encoder = get_encoder(encoder_name, device=device)
            log(f"encoding {len(split.texts):,} {split_name} texts with {encoder_name} on {encoder.device} ...")
            start = time.perf_counter()
            vectors = encoder.encode(split.texts)
            log(f"  {time.perf_counter() - start:.0f} s; cached in {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
        if vectors.shape[0] != len(split.texts):
            raise RuntimeError(f"{path} holds {vectors.shape[0]} rows for {len(split.texts)} texts; delete it.")
        out.append(vectors.astype(np.float32, copy=False))
    return out[0], out[1]
