"""What ships to a cluster is checked here: manifests, the image's Dockerfile, the YAML."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(p for p in (REPO / "manifests").glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schema(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.30", strict=True)  # raises on any schema error


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((REPO / "manifests" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(REPO / "images" / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_repository_yaml_passes_yamllint():
    proc = subprocess.run([sys.executable, "-m", "yamllint", "-s", "-c", str(REPO / ".yamllint.yaml"),
                           "params.yaml", "dvc.yaml", "manifests", ".yamllint.yaml"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
