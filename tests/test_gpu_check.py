"""``bench/gpu_check.py`` on the CPU: every section runs and reports, and a failure is a failed row.

The script is for a maintainer's CUDA machine; here it runs its smoke sizes on the CPU so that a change
that breaks one of the paths it times (an encoder, a strategy, a head) breaks this test too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )


def rows(stdout: str) -> dict[tuple[str, str], str]:
    """``{(section, check): status}`` from the final table."""
    table = stdout.split("\n-------")[1].splitlines()[1:]
    found = {}
    for line in table:
        cells = [cell for cell in line.split("  ") if cell.strip()]
        if len(cells) >= 5:
            found[(cells[0].strip(), cells[1].strip())] = cells[-1].strip()
    return found


def test_every_section_reports_on_the_cpu():
    done = run("--pool", "3000", "--labelled", "500", "--texts", "16", "--skip", "parity")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = rows(done.stdout)
    for strategy in ("margin", "entropy", "least_confidence", "bald", "qbc", "msal", "coreset", "random"):
        assert found[("score", strategy)] == "ok", found
    assert found[("embed", "all-MiniLM-L6-v2")] == "ok"
    for head in ("logistic head", "semi-supervised head", "one-vs-rest head"):
        assert found[("train", head)] == "ok", found
    assert found[("train", "fine-tune")].startswith("skipped")


def test_the_parity_row_says_why_it_did_not_run_without_cuda():
    done = run("--skip", "embed,score,train")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status = rows(done.stdout)[("parity", "CUDA parity tests")]
    if torch.cuda.is_available():
        assert status == "ok"
    else:
        assert status == "skipped (no CUDA device)"


def test_a_broken_path_is_a_failed_row_and_a_failing_exit():
    # an encoder that does not exist on this machine: the embed row fails, the script exits 1
    done = run("--skip", "parity,score,train", "--encoder", "sentence-transformers/not-installed")
    assert done.returncode == 1, done.stdout[-3000:]
    assert rows(done.stdout)[("embed", "not-installed")].startswith("FAILED")
