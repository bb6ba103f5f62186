"""A first day end to end: `mmvideos run` on three own videos (one silent), then again from the
cache; what the terminal says, and every page the run made, opened in headless chromium inside a
sandboxed iframe as the Kubeflow UI shows it, offline: each self-contained and under the UI's
size limit. Screenshots go to $MMVIDEOS_SCREENSHOTS (default: the test's temporary folder)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from browser import outside_references, screenshot
from test_benchmarks import make_esc50, sounds

from media_fixtures import tone, write_media
from mmvideos.cluster.pages import PAGE_LIMIT_BYTES
from mmvideos.settings import load_params

MMVIDEOS = [sys.executable, "-m", "mmvideos.cli"]


@pytest.fixture(scope="module")
def first_day(tmp_path_factory):
    """Two runs of the same small corpus and settings: computed, then all from the cache. The
    benchmark is one's own too: 2 classes x 5 clips in ESC-50's layout."""
    base = tmp_path_factory.mktemp("first-day")
    source = base / "my-videos"
    source.mkdir()
    write_media(source / "street.mp4", 7.0, audio=tone(7.0))
    write_media(source / "kitchen.mp4", 4.0, audio=tone(4.0, hz=660.0))
    write_media(source / "silent.mp4", 5.0)
    params = load_params()
    params["pretrain"].update(epochs=2, width_mult=0.125, batch_size=2, models=["vggish_fc"])
    params["transfer"].update(max_steps=200, val_rounds=1)
    audio = sounds(base)
    params["benchmarks"]["esc50"] = str(make_esc50(base / "my-benchmark", {"tone": audio["tone"],
                                                                          "noise": audio["noise"]}, per_fold=1))
    (base / "params.yaml").write_text(yaml.safe_dump(params))
    command = [*MMVIDEOS, "--params", str(base / "params.yaml"), "run", "--source", str(source), "--workdir",
               str(base / "work"), "--data-root", str(base / "root")]
    runs = [subprocess.run(command, capture_output=True, text=True, cwd=base, timeout=1200) for _ in range(2)]
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    return base / "work", runs[0].stdout, runs[1].stdout


@pytest.mark.slow
def test_the_terminal_speaks_the_users_words(first_day):
    _, first, again = first_day
    started = re.findall(r"^task (\d+) of (\d+): (.+)$", first, re.M)
    total = int(started[0][1])
    assert [int(n) for n, _, _ in started] == list(range(1, total + 1))  # every task of the run, counted right
    names = {name for _, _, name in started}
    assert {"list source", "probe", "ingest", "gather clips", "annotate audio", "gather features", "pretrain",
            "transfer", "report"} <= names
    assert not any(name.startswith(("for-loop", "gather-")) for name in names)  # no KFP-internal names
    assert re.search(r"^    esc50: fits: .*\d+/\d+", first, re.M)  # the transfer step's fits, as progress lines
    assert "  rejected silent.mp4: no audio stream (picture only)\n" in first
    assert "  drift    not computed: " in first and "label columns drifted" not in first
    assert re.search(r"^  - warning: the model was pretrained on \d+ clips \(fewer than 1000", first, re.M)
    # the own 2-class benchmark: validation parts cut to 4, said so, and no Top-5 figure
    assert "  - note: transfer.val_folds 5 lowered to 4: the smallest class has 4 clips" in first
    pretrained = re.findall(r"^  \| vggish_fc pretrained \|(.*)$", first, re.M)[0]  # the results table, then the spread
    header = [h.strip() for h in re.search(r"^  \| Model \|(.*)$", first, re.M).group(1).split("|")]
    (top5,) = [h for h in header if h.endswith(" Top-5")]
    assert top5.startswith("my-benchmark") and pretrained.split("|")[header.index(top5)].strip() == "–"
    # the rerun: nothing computed, said so, and the outputs are those of the first run
    assert "reuse    probe, clip, annotate visual, annotate audio, features: nothing run, outputs from the cache" in again
    assert "nothing changed, every output came from the cache" in again
    assert "reused, 0 computed" not in again and "computed (" not in again


@pytest.mark.slow
def test_every_page_is_self_contained_and_renders_framed_offline(first_day, tmp_path):
    work, _, _ = first_day
    shots = Path(os.environ.get("MMVIDEOS_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    index = work / "latest" / "index.html"
    assert outside_references(index) == ([], [])  # every link leads to a page of the run
    folder = sorted((work / "pages").iterdir())[-1]  # the second run's pages (its outputs: the first run's)
    pages = sorted(folder.glob("*.html"))
    titles = {re.search(r"<title>(.*?)</title>", p.read_text()).group(1) for p in pages}
    assert {"Label audit", "pre-training curves", "Label statistics", "Label drift", "Ingest",
            "mmvideos transfer results"} <= titles, titles
    for page in pages:
        assert page.stat().st_size <= PAGE_LIMIT_BYTES, f"{page.name}: {page.stat().st_size} bytes"
        assert outside_references(page) == ([], []), page.name
        blocked = screenshot(page, shots / f"{page.stem}.png")
        assert blocked == [], f"{page.name} loads from outside itself: {blocked}"
    audit = (folder / "label-audit.html").read_text()
    assert audit.count("data:audio/ogg;base64,") >= 2 and audit.count("data:image/jpeg;base64,") >= 6
    curves = (folder / "pre-training-curves.html").read_text()  # validation loss, or why a tiny set shows none
    assert ("<th>val_loss</th>" in curves) != ("<b>No validation figures</b>" in curves)


@pytest.mark.slow
def test_mmvideos_open_finds_the_latest_runs_pages_and_the_model_card_is_there(first_day):
    work, _, _ = first_day
    done = subprocess.run([*MMVIDEOS, "open", "--workdir", str(work), "--print"], capture_output=True, text=True)
    assert done.returncode == 0 and Path(done.stdout.strip()) == (work / "latest" / "index.html").resolve()
    first = sorted((work / "pages").iterdir())[0].name
    done = subprocess.run([*MMVIDEOS, "open", first, "--workdir", str(work), "--print"], capture_output=True, text=True)
    assert done.returncode == 0 and Path(done.stdout.strip()) == work / "pages" / first / "index.html"
    missing = subprocess.run([*MMVIDEOS, "open", "no-such-run", "--workdir", str(work)], capture_output=True, text=True)
    assert missing.returncode == 2 and "runs with pages: mmvideos-" in missing.stderr
    drift = json.loads((work / "latest" / "drift").read_text())  # what the UI's metrics show: no verdict
    assert drift["computed"] == 0 and "dataset_drift" not in drift
    card = (work / "latest" / "models-vggish_fc" / "MODEL_CARD.md").read_text()
    assert re.search(r"^- \d+ training clips \(\d+ labelled clips in all\)$", card, re.M)
    assert "weights SHA-256" in card and "efficientnet-lite0" in card
    (collected,) = work.glob("outputs/*/for-loop-*/collect/collected/MODEL_CARD.md")
    assert "| esc50 | pretrained |" in collected.read_text()
