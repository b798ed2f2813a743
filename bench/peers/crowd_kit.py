"""Run the open-source peer crowd-kit (Toloka) on the same answers as Quorum's aggregators.

Used by ``bench/aggregation.py``. Two halves:

* In Quorum's environment (standard library only): :func:`ensure_venv` creates a *separate*
  virtualenv (crowd-kit brings pandas, nltk, transformers, ... which must not leak into
  Quorum's ``.venv``) and ``pip install crowd-kit==1.4.2`` into it, skipped when
  ``import crowdkit`` already works there. :func:`run_crowdkit` writes the answers to a
  temporary ``.npz``, runs *this file* with the venv's interpreter, and reads back JSON.
* Inside the peer venv (``python crowd_kit.py IN.npz OUT.json METHOD...``): builds the
  ``task, worker, label`` DataFrame crowd-kit expects (not timed), then times
  ``fit_predict_proba`` of each method (wall and CPU seconds) and returns the predicted label
  index and its probability for every item.

crowd-kit 1.4.2 notes (the benchmark runs ``ALL_METHODS``: MajorityVote, DawidSkene,
OneCoinDawidSkene, GLAD, MACE; ``Wawa`` fails under the scikit-learn 1.9 that pip brings, since
its ``check_is_fitted`` needs ``__sklearn_tags__``): ``DawidSkene(n_iter=100, tol=1e-5)`` by default, initialised with
majority-vote shares; cells of the error matrices are floored at 1e-10; it stops when its
evidence lower bound per answer improves by less than ``tol``. ``MajorityVote`` breaks ties with
``idxmax`` over the sorted labels (the lowest label wins). Both count duplicated answers.

CLI for a quick look::

    python bench/peers/crowd_kit.py --install [VENV_DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import peer_venv  # bench/peers is on sys.path (beside this file, also in the peer venv)

CROWDKIT_VERSION = "1.4.2"
DEFAULT_VENV = Path(os.environ.get("CROWDKIT_BENCH_VENV", Path(__file__).resolve().parents[1] / ".venvs" / "crowdkit"))
METHODS = ("DawidSkene", "MajorityVote")
#: Every classification aggregator the benchmark sets beside Quorum's (``bench/aggregation.py``).
ALL_METHODS = ("MajorityVote", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE")
#: GLAD and MACE are slow in crowd-kit 1.4.2 (GLAD: 80 s, MACE: 52 s on ZenCrowd's 20k answers
#: here): on sets of more than ``CAPPED_ABOVE`` answers they run with these caps (fewer EM
#: iterations, fewer inner conjugate-gradient steps / random restarts), said so in the tables.
CAPPED = {"GLAD": "GLAD:n_iter=20,m_step_max_iter=10", "MACE": "MACE:n_restarts=2,n_iter=20"}
CAPPED_ABOVE = 10_000


def ensure_venv(venv_dir: Path = DEFAULT_VENV, *, quiet: bool = True) -> Path:
    """Create ``venv_dir`` with crowd-kit installed (once); return its interpreter."""
    probe = f"import crowdkit, importlib.metadata as m; assert m.version('crowd-kit') == {CROWDKIT_VERSION!r}"
    return peer_venv.ensure(venv_dir, f"crowd-kit=={CROWDKIT_VERSION}", probe, quiet=quiet)


def run_crowdkit(items, workers, labels, methods=METHODS, *, venv_dir: Path = DEFAULT_VENV) -> dict:
    """Fit crowd-kit's aggregators in the peer venv on integer long-format answers.

    A method is a crowd-kit class name, optionally with JSON-valued parameters:
    ``"DawidSkene:n_iter=20,tol=-1e300"``.

    Returns ``{method: {"labels": [...], "confidence": [...], "wall_s": float, "cpu_s": float,
    "n_iter": int | None}}`` where ``labels[i]`` is the label index chosen for item index i
    (-1 for an item without answers).
    """
    import numpy as np  # Quorum's environment has NumPy; the peer side imports it too

    python = ensure_venv(venv_dir)
    with tempfile.TemporaryDirectory(prefix="crowdkit-bench-") as tmp:
        source, target = Path(tmp) / "answers.npz", Path(tmp) / "result.json"
        np.savez(source, items=np.asarray(items), workers=np.asarray(workers), labels=np.asarray(labels))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")}
        subprocess.run([str(python), __file__, str(source), str(target), *methods], check=True, env=env)
        return json.loads(target.read_text())


def _peer_main(source: str, target: str, methods: list[str]) -> None:
    """Runs inside the crowd-kit venv."""
    import time

    import numpy as np
    import pandas as pd
    from crowdkit import aggregation

    arrays = np.load(source)
    n_items = int(arrays["items"].max()) + 1
    data = pd.DataFrame({"task": arrays["items"], "worker": arrays["workers"], "label": arrays["labels"]})
    result = {}
    for method in methods:
        name, _, spec = method.partition(":")
        params = {key: json.loads(value) for key, value in (pair.split("=", 1) for pair in spec.split(",") if pair)}
        model = getattr(aggregation, name)(**params)
        wall, cpu = time.perf_counter(), time.process_time()
        probas = model.fit_predict_proba(data)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        chosen = probas.idxmax(axis=1)
        labels = np.full(n_items, -1, dtype=np.int64)
        confidence = np.zeros(n_items)
        labels[chosen.index.to_numpy()] = chosen.to_numpy()
        confidence[probas.index.to_numpy()] = probas.max(axis=1).to_numpy()
        history = getattr(model, "loss_history_", None)

        result[method] = {
            "labels": labels.tolist(),
            "confidence": confidence.tolist(),
            "wall_s": wall,
            "cpu_s": cpu,
            "n_iter": len(history) if history is not None else None,
        }
    Path(target).write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--install":
        print(ensure_venv(Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_VENV, quiet=False))
    elif len(sys.argv) >= 4:
        _peer_main(sys.argv[1], sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
