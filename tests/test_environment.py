"""The environment is locked: what is installed is requirements.lock, every package pinned with its
hashes, and a run records which environment made its results."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from mmvideos.data.files import sha256_file
from mmvideos.training.environment import LOCK, environment

REPO = Path(__file__).resolve().parents[1]
#: Installed by the venv or by `pip install --no-deps -e .`, not by the lock.
NOT_LOCKED = {"mmvideos", "pip"}


def _locked() -> dict[str, str]:
    text = (REPO / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text, flags=re.M))
    assert len(pins) > 100 and text.count("--hash=sha256:") >= len(pins)  # every package with its hashes
    return {canonicalize_name(name): version for name, version in pins.items()}


def test_every_installed_package_is_the_locked_version_and_nothing_else_is_installed():
    locked = _locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {n: (v, installed.get(n)) for n, v in locked.items() if installed.get(n) != v} == {}
    assert set(installed) - set(locked) - NOT_LOCKED == set()
    # the lock covers pyproject's pins, the dev extra's included
    for requirement in metadata.requires("mmvideos"):
        name, _, rest = re.match(r"([A-Za-z0-9._-]+)\s*(==\s*([^\s;,]+))?", requirement).groups()
        assert canonicalize_name(name) in locked, requirement
        if rest:
            assert locked[canonicalize_name(name)] == rest, requirement


def test_pip_finds_nothing_to_install_from_the_lock():
    """`make setup`'s install, as a dry run: the lock's hashes are well formed and it is what is here."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--require-hashes", "--quiet",
                           "--report", "-", "-r", str(REPO / "requirements.lock")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["install"] == []


def test_the_environment_record_names_the_lock_and_the_kernels():
    record = environment("cpu AVX2")
    assert record["lock"] == {"file": "requirements.lock", "sha256": sha256_file(LOCK)}
    assert record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert record["torch"].split("+")[0] == metadata.version("torch") and record["weights_trained_on"] == "cpu AVX2"
    assert record["cpu_capability"] and environment(lock=REPO / "no-such.lock")["lock"] is None
