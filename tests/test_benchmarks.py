"""Benchmark readers on fixtures in the three published layouts, and the demo benchmark.

The ``make_*`` builders are shared with ``test_transfer.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from media_fixtures import speech, tone
from mmvideos.benchmarks import BenchmarkError, read_benchmark
from mmvideos.benchmarks.embeddings import decode_audio
from mmvideos.data.shards import wav_bytes
from mmvideos.demo.benchmark import CLASSES, build_demo_benchmark

RATE = 16000


def sounds(root: Path) -> dict[str, list[np.ndarray]]:
    """Three classes of real-ish 1.5-s audio, several distinct takes each (float32, 16 kHz)."""
    rng = np.random.default_rng(0)
    out: dict[str, list[np.ndarray]] = {"tone": [], "noise": [], "speech": []}
    words = ["hello", "seven", "market", "yellow", "window", "garden", "river", "paper", "orange", "silver"]
    for k in range(10):
        out["tone"].append(tone(1.5, RATE, hz=300.0 + 90 * k))
        out["noise"].append((0.2 * rng.standard_normal(int(1.5 * RATE))).astype(np.float32))
        voice, rate = speech(words[k], root / f"voice{k}.wav")
        voice = np.interp(np.arange(0, len(voice), rate / RATE), np.arange(len(voice)), voice)  # -> 16 kHz
        out["speech"].append(np.pad(voice, (0, max(0, int(1.5 * RATE) - len(voice))))[: int(1.5 * RATE)])
    return out


def write_wav(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes((np.clip(samples, -1, 1) * 32767).astype(np.int16), RATE))


def make_esc50(root: Path, audio: dict[str, list[np.ndarray]], per_fold: int = 2) -> Path:
    """ESC-50 layout: 3 classes x 5 folds x ``per_fold`` clips."""
    rows = []
    for target, (category, takes) in enumerate(audio.items()):
        for i in range(5 * per_fold):
            fold = i % 5 + 1
            name = f"{fold}-{100 + i}-A-{target}.wav"
            write_wav(root / "audio" / name, takes[i])
            rows.append([name, fold, target, category, "False", str(100 + i), "A"])
    (root / "meta").mkdir()
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    return root


def make_tut2018(root: Path, audio: dict[str, list[np.ndarray]], header: bool = True) -> Path:
    """TUT 2018 Task 1A layout: 3 scenes, 4 train + 2 evaluate clips each."""
    meta, train, evaluate = [], [], []
    for scene, takes in audio.items():
        for i in range(6):
            name = f"audio/{scene}-barcelona-{i}-0-a.wav"
            write_wav(root / name, takes[i])
            meta.append(f"{name}\t{scene}\tbarcelona-{i}\ta")
            (train if i < 4 else evaluate).append(f"{name}\t{scene}")
    (root / "evaluation_setup").mkdir(parents=True)
    head_meta = ["filename\tscene_label\tidentifier\tsource_label"] if header else []
    head_fold = ["filename\tscene_label"] if header else []
    (root / "meta.csv").write_text("\n".join(head_meta + meta) + "\n")
    (root / "evaluation_setup" / "fold1_train.csv").write_text("\n".join(head_fold + train) + "\n")
    (root / "evaluation_setup" / "fold1_evaluate.csv").write_text("\n".join(head_fold + evaluate) + "\n")
    return root


MIDS = {"tone": "/m/0tone", "noise": "/m/0noise", "speech": "/m/09x0r"}


def make_audioset(root: Path, audio: dict[str, list[np.ndarray]]) -> Path:
    """AudioSet layout: 3 classes, multi-label segments, clips named three ways, one clip missing."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/0tone,"Tone, sine"\n1,/m/0noise,Noise\n2,/m/09x0r,Speech\n')
    header = "# Segments csv created Sun Mar  5 10:54:25 2017\n# num_ytids=9, num_segs=9\n" \
             "# YTID, start_seconds, end_seconds, positive_labels\n"
    for split, count in (("balanced_train", 6), ("eval", 3)):
        lines = []
        for k in range(count):
            ytid = f"{split[:1]}{k:02d}-_xYzAb{k}"  # 11 characters, with '-' and '_' as real ids have
            classes = [list(MIDS)[k % 3]] + (["noise"] if k % 2 and k % 3 != 1 else [])
            mix = sum(audio[c][k] for c in classes)
            start = 30.0 + k
            style = k % 3  # three accepted file names
            name = {0: f"{ytid}.wav", 1: f"Y{ytid}.wav", 2: f"{ytid}_{int(start)}.wav"}[style]
            write_wav(root / "audio" / split / name, mix)
            labels = ",".join(MIDS[c] for c in classes)
            lines.append(f'{ytid}, {start:.3f}, {start + 10:.3f}, "{labels}"')
        if split == "eval":
            lines.append('zzzzzzzzzzz, 0.000, 10.000, "/m/09x0r"')  # taken down: no file
        (root / f"{split}_segments.csv").write_text(header + "\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def audio(tmp_path_factory) -> dict[str, list[np.ndarray]]:
    return sounds(tmp_path_factory.mktemp("voices"))


def test_esc50_reader_accepts_the_layout(tmp_path, audio):
    bench = read_benchmark("esc50", make_esc50(tmp_path, audio))
    assert bench.classes == ("tone", "noise", "speech")
    assert len(bench.table) == 30 and not bench.multi_label
    assert [s.name for s in bench.protocol] == [f"fold{k}" for k in range(1, 6)]
    assert bench.protocol[0].test == ("1",) and bench.protocol[0].train == ("2", "3", "4", "5")
    row = bench.table.iloc[0]
    assert row["labels"] == [0] and Path(row["uri"]).is_file()


def test_esc50_reader_names_the_problem(tmp_path, audio):
    root = make_esc50(tmp_path, audio)
    (root / "audio" / "1-100-A-0.wav").unlink()
    with pytest.raises(BenchmarkError, match=r"line 2: clip '1-100-A-0.wav' is not in"):
        read_benchmark("esc50", root)
    meta = root / "meta" / "esc50.csv"
    meta.write_text(meta.read_text().replace("1-100-A-0.wav,1,0,tone", "1-100-A-0.wav,one,0,tone"))
    with pytest.raises(BenchmarkError, match=r"esc50.csv: line 2: fold and target must be integers"):
        read_benchmark("esc50", root)
    meta.unlink()
    with pytest.raises(BenchmarkError, match=r"missing file .*meta/esc50.csv"):
        read_benchmark("esc50", root)


@pytest.mark.parametrize("header", [True, False])
def test_tut2018_reader_accepts_the_layout(tmp_path, audio, header):
    bench = read_benchmark("tut2018", make_tut2018(tmp_path, audio, header))
    assert bench.classes == ("noise", "speech", "tone")  # sorted scene labels
    assert bench.table["fold"].value_counts().to_dict() == {"train": 12, "evaluate": 6}
    assert bench.table.set_index("clip_id").loc["speech-barcelona-5-0-a", "labels"] == [1]


def test_tut2018_reader_names_the_problem(tmp_path, audio):
    root = make_tut2018(tmp_path, audio)
    setup = root / "evaluation_setup" / "fold1_evaluate.csv"
    setup.write_text(setup.read_text().replace("tone-barcelona-4-0-a.wav\ttone", "tone-barcelona-4-0-a.wav\tpark"))
    with pytest.raises(BenchmarkError, match=r"fold1_evaluate.csv: line \d+: 'audio/tone-barcelona-4-0-a.wav' "
                                             r"labelled 'park' but 'tone' in meta.csv"):
        read_benchmark("tut2018", root)
    setup.unlink()
    with pytest.raises(BenchmarkError, match="missing file .*fold1_evaluate.csv"):
        read_benchmark("tut2018", root)


def test_audioset_reader_accepts_the_layout(tmp_path, audio):
    bench = read_benchmark("audioset", make_audioset(tmp_path / "as", audio))
    assert bench.multi_label and bench.classes == ("Tone, sine", "Noise", "Speech")
    assert bench.missing == 1
    assert bench.table["fold"].value_counts().to_dict() == {"balanced_train": 6, "eval": 3}
    labels = bench.table.set_index("clip_id")["labels"]
    assert labels["b01-_xYzAb1_31000"] == [1]          # Y-prefixed file name
    assert labels["b03-_xYzAb3_33000"] == [0, 1]       # two labels
    assert labels["b02-_xYzAb2_32000"] == [2]          # <YTID>_<start> file name


def test_audioset_reader_names_the_problem(tmp_path, audio):
    root = make_audioset(tmp_path / "as", audio)
    segments = root / "eval_segments.csv"
    segments.write_text(segments.read_text().replace('"/m/09x0r"', '"/m/unknown"'))
    with pytest.raises(BenchmarkError, match=r"eval_segments.csv: line 6: label\(s\) \['/m/unknown'\] not in"):
        read_benchmark("audioset", root)
    segments.write_text("# a\n# b\n# c\nabc, 0.0, 10.0\n")
    with pytest.raises(BenchmarkError, match=r"line 4: expected YTID, start_seconds"):
        read_benchmark("audioset", root)


def test_unknown_benchmark_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'esc10'"):
        read_benchmark("esc10", tmp_path)


def test_demo_benchmark_is_real_esc50(tmp_path):
    root = build_demo_benchmark(tmp_path / "demo")
    bench = read_benchmark("esc50", root)
    assert bench.classes == tuple(CLASSES)
    assert len(bench.table) == 52
    # every class in every fold, and no source recording in two folds
    per_fold = bench.table.assign(target=bench.table["labels"].str[0]).groupby("fold")["target"].nunique()
    assert (per_fold == len(CLASSES)).all()
    assert (bench.table.groupby("src_file")["fold"].nunique() == 1).all()
    samples = decode_audio(bench.table["uri"].iloc[0], 44100)
    assert samples.size == 5 * 44100 and np.abs(samples).max() > 0.05  # 5 s of real, audible sound
    mtime = (root / "meta" / "esc50.csv").stat().st_mtime_ns
    build_demo_benchmark(root)  # re-run: the marker makes it a no-op
    assert (root / "meta" / "esc50.csv").stat().st_mtime_ns == mtime
