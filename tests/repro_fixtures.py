"""A throw-away git repository holding this project's DVC setup (dvc.yaml, .dvc/config, the code
its stages depend on) over a tiny corpus, for the DVC tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GIT_ID = ["-c", "user.name=mmvideos tests", "-c", "user.email=tests@mmvideos.invalid"]


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1"}


def dvc(*args: str, cwd: Path) -> str:
    """Run ``dvc ARGS`` in ``cwd``; its stdout, after asserting it succeeded."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def git(*args: str, cwd: Path) -> str:
    """Run ``git ARGS`` in ``cwd``; its stdout, after asserting it succeeded."""
    proc = subprocess.run(["git", *GIT_ID, *args], cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def small_params(source: Path, root: Path | str) -> dict:
    """params.yaml with the tiny settings the tests run at (two pretraining epochs, a narrow
    model, a short transfer fit)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source=str(source), root=str(root))
    params["pretrain"].update(epochs=2, width_mult=0.125, batch_size=2)
    params["transfer"].update(max_steps=200, val_rounds=1)
    return params


def make_repo(path: Path, source: Path, remote: str, root: str | None = None) -> Path:
    """A git repository at ``path`` with the project's dvc.yaml, .dvc/config, .gitignore and
    src/ (the stages' code deps), small settings over ``source``, and the default remote pointed
    at ``remote`` in ``.dvc/config.local`` (as a reviewer would); committed. The data root is
    ``root`` (relative: inside each clone, as the project's ``data/root``), by default one folder
    beside the repository, which its clones share."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, path / name)
    (path / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(REPO / ".dvc" / name, path / ".dvc" / name)
    shutil.copytree(REPO / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (path / "params.yaml").write_text(yaml.safe_dump(small_params(source, root or path.parent / "root")))
    dvc("remote", "modify", "--local", "gcs", "url", remote, cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "project", cwd=path)
    return path
