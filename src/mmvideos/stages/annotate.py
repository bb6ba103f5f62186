"""Stages 3-4: machine annotation of clips (paper section 2) and the merged multi-modal labels.

``annotate_visual`` and ``annotate_audio`` run in parallel over one clip folder
(``mmvideos.stages.clip``); ``merge_labels`` joins their outputs into the training label table.

``annotate_visual`` -> ``out_dir/``:
  * ``visual.parquet``: clip_id, labels (list[str], ``visual:<class id>``, best first), scores
    (list[float], the clip-mean probabilities), annotator, annotator_version, weights_sha256.
    Frames (3 per second) are classified, the probabilities averaged over the clip's frames,
    and the top ``top_k`` (10) kept.
  * ``classes.csv``: id (``visual:<class id>``), name: the annotator's whole vocabulary.
  * ``summary.json``: clips, frames; ``run.json``: this run's units reused and computed, seconds
    (:mod:`mmvideos.data.runrecord`).

``annotate_audio`` -> ``out_dir/``: ``audio.parquet`` (same columns, ids ``audio:<AudioSet mid>``),
  ``classes.csv``, ``summary.json`` (clips, audio_seconds, mean_labels_per_clip), ``run.json``.
  Each non-overlapping 1-s segment of a clip is tagged, the scores are averaged over the
  segments, and the top ``top_k`` (5) that reach ``threshold`` kept. A final partial second is
  dropped; a clip shorter than 1 s is zero-padded to one segment.

The ``visual:``/``audio:`` prefixes keep ids of the two vocabularies from colliding.
``merge_labels`` is documented on the function.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from mmvideos.annotators import is_device, known_models, load_annotator
from mmvideos.annotators.base import ACTIVATIONS, FRONT_ENDS
from mmvideos.data import dataroot, storage, tables
from mmvideos.data.atomic import scratch_dir, write_parquet, write_text
from mmvideos.data.dataroot import DataRoot, unit_key
from mmvideos.data.runrecord import write_summary
from mmvideos.features.presets import SAMPLE_RATE
from mmvideos.progress import progress_bar
from mmvideos.stages import label_stats
from mmvideos.stages.clip import iter_shard_audio, iter_shard_frames, read_clips, require_clip_units

if TYPE_CHECKING:
    from mmvideos.annotators import Annotator

LABEL_COLUMNS = ["clip_id", "labels", "scores", "annotator", "annotator_version", "weights_sha256"]
MERGED_COLUMNS = ["clip_id", "video_id", "fold", "split", "visual_labels", "visual_scores", "audio_labels",
                  "audio_scores", "label_ids"]


@dataclasses.dataclass(frozen=True)
class VisualConfig:
    """``params.yaml: annotate_visual``."""

    model: str = "efficientnet-lite0"  # a registered visual model (mmvideos.annotators.registered)
    weights: str = ""  # local path or gs:// URI; "" = the model's embedded weights
    labels: str = ""  # CSV id,name; "" = the model's own vocabulary
    activation: str = ""  # softmax | sigmoid | none; "" = the model's default
    image_size: int = 224
    mean: tuple[float, ...] = ()  # per channel, 0..255 units; () = the model's default
    std: tuple[float, ...] = ()
    top_k: int = 10  # the paper keeps the top-10 clip-mean predictions
    batch_size: int = 64  # frames per forward pass (whole clips are kept together)
    device: str = "cpu"
    runtime: str = "auto"  # torch | onnx (an ONNX export run by onnxruntime) | auto: onnx on CPU, torch on CUDA
    decode_workers: int = 0  # processes decoding the JPEG frames; 0 = the annotating process (a few on CUDA)

    def __post_init__(self) -> None:
        if self.runtime not in ("auto", "torch", "onnx"):
            raise ValueError(f"runtime must be auto, torch or onnx, got {self.runtime!r}")
        if self.decode_workers < 0:
            raise ValueError(f"decode_workers must be 0 or more, got {self.decode_workers}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) not in (0, 3) or len(self.std) not in (0, 3):
            raise ValueError("mean and std take three values (R, G, B) or none")
        _check_common("visual", self.model, self.device, self.activation, self.top_k, self.batch_size)


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """``params.yaml: annotate_audio``."""

    model: str = "yamnet"  # a registered audio model
    weights: str = ""
    labels: str = ""
    activation: str = ""  # "" = sigmoid (AudioSet is multi-label)
    features: str = ""  # front end: yamnet | paper | waveform; "" = the model's default
    top_k: int = 5  # the paper: top-5 ...
    threshold: float = 0.025  # ... above a fixed threshold: 3.05 labels per clip on the demo videos
    batch_size: int = 256  # 1-s segments per forward pass
    device: str = "cpu"
    runtime: str = "auto"  # an ONNX tagger: onnx (onnxruntime) | torch (rebuilt in PyTorch) | auto: onnx on CPU, torch on CUDA
    num_threads: int = 0  # onnxruntime intra-op threads; 0 = its default

    def __post_init__(self) -> None:
        if self.runtime not in ("auto", "torch", "onnx"):
            raise ValueError(f"runtime must be auto, torch or onnx, got {self.runtime!r}")
        if self.features and self.features not in FRONT_ENDS:
            raise ValueError(f"features must be one of {FRONT_ENDS} or empty, got {self.features!r}")
        if self.model == "yamnet" and self.features not in ("", "yamnet"):  # else onnxruntime fails: 100 vs 96 frames
            raise ValueError(f"annotate_audio.features: {self.features!r} does not fit annotate_audio.model yamnet, "
                             "which takes its own 96-frame log-mel patch: set features to yamnet (or leave it empty)")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")
        _check_common("audio", self.model, self.device, self.activation, self.top_k, self.batch_size)


@dataclasses.dataclass(frozen=True)
class MergeConfig:
    """``params.yaml: merge_labels``."""

    min_count: int = 1  # a label kept in the vocabulary occurs in at least this many clips
    top_categories: int = 30  # how many categories the statistics chart and tables show

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.top_categories < 1:
            raise ValueError("min_count and top_categories must be at least 1")


def _check_common(modality: str, model: str, device: str, activation: str, top_k: int, batch_size: int) -> None:
    if model not in known_models(modality):
        raise ValueError(f"model {model!r}: unknown {modality} annotator; use one of "
                         f"{', '.join(known_models(modality))}")
    if not is_device(device):
        raise ValueError(f"device must be cpu, cuda or cuda:N (N: the GPU's index), got {device!r}")
    if activation and activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS} or empty, got {activation!r}")
    if top_k < 1 or batch_size < 1:
        raise ValueError("top_k and batch_size must be at least 1")


def clip_means(items: Iterable[tuple[str, np.ndarray]], predict: Callable[[np.ndarray], np.ndarray],
               batch_size: int) -> Iterator[tuple[str, np.ndarray]]:
    """Run ``predict`` over the rows of many clips in batches; yield ``(clip_id, mean probabilities [C])``.

    Whole clips are gathered until at least ``batch_size`` rows wait, so a batch holds up to
    ``batch_size`` plus one clip's rows, and no clip is split across forward passes.
    """
    ids: list[str] = []
    arrays: list[np.ndarray] = []

    def flush() -> Iterator[tuple[str, np.ndarray]]:
        probs = predict(np.concatenate(arrays))  # [sum n_i, C]
        bounds = np.cumsum([0] + [len(a) for a in arrays])
        for clip_id, lo, hi in zip(ids, bounds[:-1], bounds[1:]):
            yield clip_id, probs[lo:hi].mean(axis=0)
        ids.clear()
        arrays.clear()

    waiting = 0  # rows gathered for the next forward pass
    for clip_id, rows in items:
        if len(rows) == 0:
            continue
        ids.append(clip_id)
        arrays.append(rows)
        waiting += len(rows)
        if waiting >= batch_size:
            yield from flush()
            waiting = 0
    if arrays:
        yield from flush()


#: Each clip's top scores kept in the data root: any ``top_k`` up to this re-selects exactly.
SCORES_KEPT = 50
SCORES = "scores.parquet"


def select_labels(classes: np.ndarray, scores: np.ndarray, ids: np.ndarray, top_k: int,
                  threshold: float = 0.0) -> tuple[list[str], list[float]]:
    """The labels of one clip: the ``top_k`` best of its stored (best-first) scores that reach ``threshold``."""
    keep = [(int(c), float(v)) for c, v in zip(classes[:top_k], scores[:top_k]) if v >= threshold]
    return ids[[c for c, _ in keep]].tolist(), [round(v, 6) for _, v in keep]


def _annotate(modality: str, clips_dir: str | Path, out_dir: str | Path, cfg, root: DataRoot,
              slot: int, slots: int, items: Callable[[str], Iterator[tuple[str, np.ndarray]]],
              weight: Callable[[pd.DataFrame], pd.Series], unit: str, threshold: float = 0.0,
              progress: bool = True) -> tuple[list[dict], Annotator, np.ndarray, dict]:
    """The shared map of both annotators over the clip units of task ``slot``.

    A unit's scores (each clip's ``SCORES_KEPT`` best clip-mean scores) are keyed by the clip
    shard's SHA-256, the annotator's name, version and weights hash, and the settings that change
    scores, not by ``top_k`` or ``threshold``: re-selecting labels runs no network.
    """
    stage = f"annotate_{modality}"
    annotator = load_annotator(modality, cfg)
    ids = (f"{modality}:" + annotator.classes["id"]).to_numpy()
    kept = max(SCORES_KEPT, cfg.top_k)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _SELECTION}
    units = dataroot.slot_units(clips_dir, "frames.tar" if modality == "visual" else "audio.tar", root, slot, slots)
    require_clip_units(clips_dir, units, root)
    clips = read_clips(clips_dir)
    work = weight(clips).groupby(clips["shard"]).sum()  # progress-bar units per clip unit
    bar = progress_bar(total=float(work.reindex(units["key"]).sum()), unit=unit, desc=stage, disable=not progress)
    started = time.monotonic()

    def compute(row, scratch: Path) -> tuple[dict, dict]:
        table = {"clip_id": [], "classes": [], "scores": []}
        for clip_id, mean in clip_means(items(row.uri, row.sha256), annotator.predict, cfg.batch_size):
            top = np.argsort(-mean, kind="stable")[:kept]
            table["clip_id"].append(clip_id)
            table["classes"].append(top.astype(np.int32))
            table["scores"].append(mean[top].astype(np.float32))
        pd.DataFrame(table).to_parquet(scratch / SCORES, index=False)
        return {"video_id": row.video_id, "clips": len(table["clip_id"])}, {SCORES: scratch / SCORES}

    keyed = [(unit_key(stage, input=row.sha256, annotator=annotator.provenance(), settings=settings, kept=kept), row)
             for row in units.itertuples(index=False)]
    records, counts, _ = root.map_units(stage, keyed, compute, lambda row, *_: bar.update(work.get(row.key, 0)))
    bar.close()
    rows = []
    for record in records:
        scores = storage.read_parquet(record["files"][SCORES]["uri"])
        for clip_id, classes, values in zip(scores["clip_id"], scores["classes"], scores["scores"]):
            labels, label_scores = select_labels(np.asarray(classes), np.asarray(values), ids, cfg.top_k, threshold)
            rows.append({"clip_id": clip_id, "labels": labels, "scores": label_scores, **annotator.provenance()})
    summary = {"clips": len(rows), **counts.as_summary(), "seconds": round(time.monotonic() - started, 2)}
    root.write_manifest(stage, records, out_dir, slots)
    return rows, annotator, ids, summary


#: Settings that only select labels from stored scores (and batching or threading, which change
#: nothing): not part of a score unit's key.
_SELECTION = ("top_k", "threshold", "batch_size", "num_threads", "decode_workers")


def _write_outputs(rows: list[dict], annotator: Annotator, ids: np.ndarray, out_dir: Path, name: str,
                   summary: dict) -> dict:
    table = pd.DataFrame(rows, columns=LABEL_COLUMNS).sort_values("clip_id", ignore_index=True)
    write_parquet(table, out_dir / f"{name}.parquet")
    classes = pd.DataFrame({"id": ids, "name": annotator.classes["name"]})
    write_text(classes.to_csv(index=False), out_dir / "classes.csv")
    summary = {**summary, **annotator.provenance(), "classes": len(classes)}
    write_summary(summary, out_dir)
    return summary


def annotate_visual(clips_dir: str | Path, out_dir: str | Path, cfg: VisualConfig, root: DataRoot,
                    slot: int = 0, slots: int = 1, progress: bool = True) -> dict:
    """Label the clips of task ``slot`` with their top visual classes (module docstring); returns the summary."""
    with contextlib.ExitStack() as stack:
        pool = None
        if cfg.decode_workers:  # spawned: the parent may hold CUDA and thread pools a fork would copy
            pool = stack.enter_context(ProcessPoolExecutor(cfg.decode_workers, mp_context=mp.get_context("spawn")))
        rows, annotator, ids, summary = _annotate(
            "visual", clips_dir, out_dir, cfg, root, slot, slots, functools.partial(iter_shard_frames, pool=pool),
            lambda clips: clips["n_frames"], "frame", progress=progress)
    return _write_outputs(rows, annotator, ids, Path(out_dir), "visual", summary)


def one_second_segments(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio -> float32 ``[n_seconds, 16000]`` non-overlapping segments (module docstring)."""
    if sample_rate != SAMPLE_RATE:
        import torch
        import torchaudio.functional

        samples = torchaudio.functional.resample(torch.from_numpy(samples), sample_rate, SAMPLE_RATE).numpy()
    n = max(1, len(samples) // SAMPLE_RATE)
    samples = np.pad(samples, (0, max(0, SAMPLE_RATE - len(samples))))
    return samples[: n * SAMPLE_RATE].reshape(n, SAMPLE_RATE).astype(np.float32, copy=False)


def _audio_segments(uri: str, sha256: str = "") -> Iterator[tuple[str, np.ndarray]]:
    for clip_id, samples, rate in iter_shard_audio(uri, sha256):
        yield clip_id, one_second_segments(samples, rate)


def annotate_audio(clips_dir: str | Path, out_dir: str | Path, cfg: AudioConfig, root: DataRoot,
                   slot: int = 0, slots: int = 1, progress: bool = True) -> dict:
    """Label the clips of task ``slot`` with their top audio classes (module docstring); returns the summary."""
    rows, annotator, ids, summary = _annotate(
        "audio", clips_dir, out_dir, cfg, root, slot, slots, _audio_segments,
        lambda clips: clips["end_s"] - clips["start_s"], "s", cfg.threshold, progress)
    summary |= {"labels": sum(len(r["labels"]) for r in rows), "threshold": cfg.threshold}
    return _write_outputs(rows, annotator, ids, Path(out_dir), "audio", summary)


def _read_classes(folder: str | Path) -> pd.DataFrame:
    with storage.local_copy(storage.join(folder, "classes.csv")) as path:
        return pd.read_csv(path, dtype=str, keep_default_na=False)


class _Cursor:
    """Walks one annotator's label rows (clip_id order) alongside the clips (the same order)."""

    def __init__(self, rows: Iterator[tuple[str, list, list]]) -> None:
        self.rows = rows
        self.head = next(rows, None)

    def take(self, clip_id: str) -> tuple[list, list]:
        """The labels and scores of ``clip_id`` (empty when unlabelled); rows of clips not in the
        clip table, which come before it, are passed over."""
        while self.head is not None and self.head[0] < clip_id:
            self.head = next(self.rows, None)
        if self.head is None or self.head[0] != clip_id:
            return [], []
        _, labels, scores = self.head
        self.head = next(self.rows, None)
        return labels or [], scores or []

    def drain(self) -> None:
        """Read the rows after the last clip, so the repeats and provenance see every row."""
        for _ in self.rows:
            pass


def _label_rows(path: Path, scratch: Path, provenance: dict, repeats: list) -> Iterator[tuple[str, list, list]]:
    """``(clip_id, labels, scores)`` of one annotator's table in clip_id order, streamed; adds its
    annotator records to ``provenance`` (a dict used as an ordered set) and repeated clips to ``repeats``."""
    previous = None
    for table in tables.sorted_tables([path], ["clip_id"], scratch, LABEL_COLUMNS):
        provenance.update(dict.fromkeys(zip(*(table[c].to_pylist() for c in LABEL_COLUMNS[3:]))))
        for row in zip(table["clip_id"].to_pylist(), table["labels"].to_pylist(), table["scores"].to_pylist()):
            if row[0] == previous:
                repeats.append(row[0])
            previous = row[0]
            yield row


def merge_labels(clips_dir: str | Path, visual_dir: str | Path, audio_dir: str | Path, out_dir: str | Path,
                 cfg: MergeConfig, progress: bool = True) -> dict:
    """Join both annotators' labels into one multi-modal vocabulary and label table.

    The vocabulary starts from both annotators' whole class lists (``classes.csv``); labels
    occurring in fewer than ``cfg.min_count`` clips are dropped, and utilisation is
    ``used / total`` (the paper: 10,988 of 11,693 = 93.97%). Writes into ``out_dir``:

    * ``labels.parquet``: clip_id, video_id, fold, split, visual_labels, visual_scores,
      audio_labels, audio_scores (as annotated; empty for a clip an annotator did not label)
      and label_ids (visual then audio labels that are in the vocabulary: the training targets).
      Sorted by clip_id.
    * ``vocabulary.parquet``: index (0..V-1: visual classes, then audio classes, each in the
      annotator's own order), id, name, modality (visual | audio), count (clips carrying it).
    * statistics (``mmvideos.stages.label_stats``): PNG plots, ``stats.md``, ``stats.html``.
    * ``summary.json``.

    Streamed, so memory does not grow with the corpus (15 M clips are gigabytes of lists): the
    three tables are read in clip_id order (:mod:`mmvideos.data.tables`: sorted runs merged with
    pyarrow, spilled to a scratch folder when a table is not in order) and merge-joined row by
    row into a scratch table, counting each label's clips and each clip's labels as it goes; the
    vocabulary comes from those counts, and a second pass over the scratch table adds label_ids
    and writes ``labels.parquet`` in row groups. Only counters of the vocabulary's size are held.
    """
    out_dir = Path(out_dir)
    provenance: dict[str, dict] = {"visual": {}, "audio": {}}
    repeats: dict[str, list] = {"visual": [], "audio": []}
    counts: Counter[str] = Counter()  # label id -> clips carrying it
    per_clip: dict[str, Counter[int]] = {"visual": Counter(), "audio": Counter(), "all": Counter()}  # labels -> clips
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(scratch_dir("merge")))
        clips_path = stack.enter_context(storage.local_copy(storage.join(clips_dir, "clips.parquet")))
        folders = {"visual": visual_dir, "audio": audio_dir}
        paths = {m: stack.enter_context(storage.local_copy(storage.join(folder, f"{m}.parquet")))
                 for m, folder in folders.items()}
        cursors = {m: _Cursor(_label_rows(paths[m], scratch, provenance[m], repeats[m])) for m in paths}
        schema = tables.table_schema([clips_path], MERGED_COLUMNS[:4])
        for m in ("visual", "audio"):
            label_schema = tables.table_schema([paths[m]])
            for column, values in (("labels", pa.string()), ("scores", pa.float64())):
                field = label_schema.field(column)  # untyped when the annotator labelled no clip
                field = field if pa.types.is_list(field.type) else pa.field(column, pa.list_(values))
                schema = schema.append(field.with_name(f"{m}_{column}"))
        bar = progress_bar(total=tables.count_rows(clips_path), unit="clip", desc="merge_labels", disable=not progress)

        def joined() -> Iterator[pa.Table]:
            for clips in tables.sorted_tables([clips_path], ["clip_id"], scratch, MERGED_COLUMNS[:4]):
                columns = {c: clips[c] for c in MERGED_COLUMNS[:4]}
                found = {m: [cursors[m].take(c) for c in clips["clip_id"].to_pylist()] for m in cursors}
                for m, pairs in found.items():
                    columns[f"{m}_labels"] = [labels for labels, _ in pairs]
                    columns[f"{m}_scores"] = [scores for _, scores in pairs]
                    per_clip[m].update(len(labels) for labels, _ in pairs)
                for (visual, _), (audio, _) in zip(found["visual"], found["audio"]):
                    counts.update(set(visual) | set(audio))
                bar.update(clips.num_rows)
                yield pa.table(columns, schema=schema)

        clips_count = tables.write_tables(joined(), scratch / "joined.parquet", schema)
        bar.close()
        for m, cursor in cursors.items():
            cursor.drain()
            if repeats[m]:
                raise ValueError(f"{folders[m]}: {m}.parquet labels clip {repeats[m][0]!r} more than once "
                                 f"({len(repeats[m])} repeats): re-run annotate_{m} on this clip folder")
        classes = [_read_classes(folder).assign(modality=m) for m, folder in folders.items()]
        every_class = pd.concat(classes, ignore_index=True)
        every_class["count"] = [counts.get(i, 0) for i in every_class["id"]]
        vocabulary = every_class[every_class["count"] >= cfg.min_count].reset_index(drop=True)
        vocabulary.insert(0, "index", np.arange(len(vocabulary), dtype=np.int64))
        unknown = set(counts) - set(every_class["id"])
        if unknown:
            raise ValueError(f"labels missing from the annotators' classes.csv: {sorted(unknown)[:5]}")
        kept = set(vocabulary["id"])

        def targets() -> Iterator[pa.Table]:
            for batch in tables.read_batches(scratch / "joined.parquet"):
                ids = [[i for i in v + a if i in kept]
                       for v, a in zip(batch["visual_labels"].to_pylist(), batch["audio_labels"].to_pylist())]
                per_clip["all"].update(map(len, ids))
                yield pa.Table.from_batches([batch]).append_column(pa.field("label_ids", pa.list_(pa.string())),
                                                                   [ids])

        tables.write_tables(targets(), out_dir / "labels.parquet",
                            schema.append(pa.field("label_ids", pa.list_(pa.string()))))
    write_parquet(vocabulary[["index", "id", "name", "modality", "count"]], out_dir / "vocabulary.parquet")

    def mean(modality: str) -> float:
        return round(sum(k * n for k, n in per_clip[modality].items()) / clips_count, 3) if clips_count else 0.0

    keys = LABEL_COLUMNS[3:]
    summary = {
        "clips": clips_count,
        "vocabulary_total": len(every_class),
        "vocabulary_used": len(vocabulary),
        "utilisation": round(len(vocabulary) / max(len(every_class), 1), 4),
        "classes_total": {m: int(n) for m, n in every_class["modality"].value_counts().items()},
        "classes_used": {m: int(n) for m, n in vocabulary["modality"].value_counts().items()},
        "mean_visual_labels_per_clip": mean("visual"),
        "mean_audio_labels_per_clip": mean("audio"),
        "mean_labels_per_clip": mean("all"),
        "clips_without_visual": per_clip["visual"][0],
        "clips_without_audio": per_clip["audio"][0],
        "annotators": {m: [dict(zip(keys, record)) for record in records] for m, records in provenance.items()},
    }
    summary["stats_files"] = label_stats.write_label_stats(per_clip, vocabulary, summary, out_dir, cfg.top_categories)
    write_summary(summary, out_dir)
    return summary
