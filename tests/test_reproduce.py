"""CI checks reproduction: a clean copy of the repository, with its own empty data root, recomputes the
whole demo. The first stages' outputs get the hashes the committed dvc.lock records; the transfer
figures, which move with the CPU's kernels, land within the committed figures' 95% intervals.

The stages before the annotators are integer and codec work (listing, probing, fingerprints,
clipping into WAV and JPEG shards), so their outputs do not move with CPU kernels; what does
(annotator scores, log-mel, training) is docs/reproduce.md's subject. The listing names the demo
videos by their path in the cache and their modification times: where those differ from the machine
that ran `make lock`, dvc.lock's hashes do not apply and the test says so instead of failing.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from repro_fixtures import REPO, dvc, git

#: The stages recomputed, in order; ``dvc repro clip`` runs the two before it.
STAGES = ("fingerprint_source", "ingest", "clip")


def _outs(lock: dict, stage: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock["stages"][stage]["outs"]}


@pytest.mark.slow
def test_a_clean_copy_recomputes_the_demo_to_dvc_lock_and_within_the_committed_intervals(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", ".gitignore", ".dvcignore", ".dvc/config", ".dvc/.gitignore"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "a clean copy", cwd=repo)
    committed = yaml.safe_load((REPO / "dvc.lock").read_text())

    dvc("repro", "fingerprint_source", cwd=repo)
    listed = yaml.safe_load((repo / "dvc.lock").read_text())
    # the demo corpus (data.source "") is fingerprinted by its pinned SHA-256s: the same on every machine
    assert _outs(listed, "fingerprint_source") == _outs(committed, "fingerprint_source")
    dvc("repro", "clip", cwd=repo)
    recomputed = yaml.safe_load((repo / "dvc.lock").read_text())
    for stage in STAGES:
        assert _outs(recomputed, stage) == _outs(committed, stage), stage
    assert (repo / "data" / "root" / "clip").is_dir()  # its own data root: nothing was read from the checkout's
    assert dvc("status", "--with-deps", "clip", cwd=repo).split()[:3] == ["fingerprint_source:", "always", "changed"]

    # the rest of the demo: annotators, labels, features, pretraining, transfer, report
    dvc("repro", cwd=repo)
    checked = 0
    for committed_file in sorted((REPO / "results" / "transfer").glob("*/metrics.json")):
        ours = json.loads((repo / committed_file.relative_to(REPO)).read_text())
        theirs = json.loads(committed_file.read_text())
        rows = {row["model"]: row for row in ours["rows"]}
        assert set(rows) == {row["model"] for row in theirs["rows"]}
        for row in theirs["rows"]:
            for metric, ci in row["ci"].items():
                if ci is None:  # no interval (a metric that means nothing on this benchmark)
                    continue
                (low, high), figure = ci, rows[row["model"]][metric]
                assert low - 1e-9 <= figure <= high + 1e-9, (committed_file.parent.name, row["model"], metric, figure,
                                                             [low, high])
                checked += 1
    assert checked >= 4 * 5  # every metric of every row of the demo benchmark
