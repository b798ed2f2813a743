"""Run the open-source peer cleanlab on the same out-of-fold probabilities as Quorum's label-error check.

Used by ``bench/label_errors.py``. Two halves, as ``crowd_kit.py``:

* In Quorum's environment (standard library and NumPy): :func:`ensure_venv` creates a *separate*
  virtualenv (``bench/.venvs/cleanlab`` or ``$CLEANLAB_BENCH_VENV``) and ``pip install
  cleanlab==2.9.0`` into it, skipped when that version already imports there. :func:`run_cleanlab`
  writes the labels and probabilities to a temporary ``.npz``, runs *this file* with the venv's
  interpreter and reads back JSON.
* Inside the peer venv (``python cleanlab_peer.py IN.npz OUT.json``): ``cleanlab.filter.find_label_issues``
  with its defaults (``filter_by="prune_by_noise_rate"``; ``n_jobs=1``, which changes only the
  speed) as a mask, and again with ``return_indices_ranked_by="self_confidence"`` for the ranked
  indices; the wall seconds of the first call.

(Named ``cleanlab_peer`` so that running it as a script does not shadow the ``cleanlab`` package.)

CLI for a quick look::

    python bench/peers/cleanlab_peer.py --install [VENV_DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import peer_venv  # bench/peers is on sys.path (beside this file, also in the peer venv)

CLEANLAB_VERSION = "2.9.0"
DEFAULT_VENV = Path(os.environ.get("CLEANLAB_BENCH_VENV", Path(__file__).resolve().parents[1] / ".venvs" / "cleanlab"))


def ensure_venv(venv_dir: Path = DEFAULT_VENV, *, quiet: bool = True) -> Path:
    """Create ``venv_dir`` with cleanlab installed (once); return its interpreter."""
    probe = f"import cleanlab, importlib.metadata as m; assert m.version('cleanlab') == {CLEANLAB_VERSION!r}"
    return peer_venv.ensure(venv_dir, f"cleanlab=={CLEANLAB_VERSION}", probe, quiet=quiet)


def run_cleanlab(labels, pred_probs, *, venv_dir: Path = DEFAULT_VENV) -> dict:
    """``{"issues": [indices], "ranked": [indices, lowest self-confidence first], "seconds": float,
    "version": str}`` from cleanlab's ``find_label_issues`` on ``labels`` / ``pred_probs``."""
    import numpy as np  # Quorum's environment has NumPy; the peer side imports it too

    python = ensure_venv(venv_dir)
    with tempfile.TemporaryDirectory(prefix="cleanlab-bench-") as tmp:
        source, target = Path(tmp) / "input.npz", Path(tmp) / "result.json"
        np.savez(source, labels=np.asarray(labels, dtype=np.int64), pred_probs=np.asarray(pred_probs, dtype=np.float64))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")}
        subprocess.run([str(python), __file__, str(source), str(target)], check=True, env=env)
        return json.loads(target.read_text())


def _peer_main(source: str, target: str) -> None:
    """Runs inside the cleanlab venv."""
    import importlib.metadata
    import time
    import warnings

    import numpy as np
    from cleanlab.filter import find_label_issues

    warnings.filterwarnings("ignore")  # "may not flag all label issues in class k": small classes
    arrays = np.load(source)
    labels, pred_probs = arrays["labels"], arrays["pred_probs"]
    started = time.perf_counter()
    mask = find_label_issues(labels, pred_probs, n_jobs=1)
    seconds = time.perf_counter() - started
    ranked = find_label_issues(labels, pred_probs, n_jobs=1, return_indices_ranked_by="self_confidence")
    Path(target).write_text(
        json.dumps(
            {
                "issues": np.flatnonzero(mask).tolist(),
                "ranked": np.asarray(ranked).tolist(),
                "seconds": seconds,
                "version": importlib.metadata.version("cleanlab"),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--install":
        print(ensure_venv(Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_VENV, quiet=False))
    else:
        _peer_main(sys.argv[1], sys.argv[2])
