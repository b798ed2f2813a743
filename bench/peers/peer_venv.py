"""A peer library in its own virtualenv (standard library only, importable from the peer venv too).

``ensure(venv_dir, requirement, probe)`` creates ``venv_dir`` once and installs ``requirement`` into it
(``pip install package==version``) unless ``probe`` (a Python snippet) already succeeds there;
returns the venv's interpreter. Quorum's own environment never sees the peer's dependencies.
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path


def venv_python(venv_dir: Path) -> Path:
    return Path(venv_dir) / "bin" / "python"


def ensure(venv_dir: Path, requirement: str, probe: str, *, quiet: bool = True) -> Path:
    python = venv_python(venv_dir)
    if python.exists():
        if subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
            return python
    else:
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", requirement]
    if quiet:
        command.insert(4, "-q")
    subprocess.run(command, check=True)
    return python
