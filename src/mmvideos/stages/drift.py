"""Label drift: do this run's machine labels look like an earlier run's (or like training)?

The corpus is re-annotated on a schedule (new annotator versions, new videos); this report tells
the platform team whether the labels moved. evidently has no multi-label target, so each clip's
label sets become one flat row (``label_frame``): label counts and score summaries, the top audio
label as a category (rare ones pooled), and one 0/1 column per frequent label. evidently's
``DataDriftPreset`` then tests every column (it picks the test per column type and sample size:
K-S / chi-square / Z-test below 1000 reference rows, Wasserstein / Jensen-Shannon above) and calls
the whole dataset drifted when at least ``drift_share`` of the columns drifted.

Bounded memory. The label tables are read in row batches (:class:`Side`), twice (train and val
of one table in the same passes): a first pass
counts each label's clips per side (the label shares and the choice of label columns, exact over
every clip; memory bounded by the vocabulary), a second builds the flat rows of a hash sample of
at most about ``sample_clips`` clips a side (every clip of a smaller table, so a small table's
report is what whole-table rows give), which evidently tests. The method is stated at the top of
``drift.html`` and in the summary's ``method``.

``label_drift`` -> ``out_dir/``:
  * ``drift.html``: evidently's interactive report (self-contained, its JavaScript inlined, its
    element ids numbered so that the same report is the same bytes), or a short page explaining
    why there was nothing to compare.
  * ``drift.json``: evidently's snapshot (``Snapshot.dict()``: every metric and test).
  * ``summary.json``: mode, clip counts, columns tested, drifted columns (names and per-column
    method, score and threshold), the dataset verdict, each label column's share of clips in the
    reference and the current data, and ``small_sample`` (fewer than 30 clips on a side: read
    the verdicts with care).
  * ``metrics.json``: the headline of the summary (its flat numbers and verdicts), for
    ``dvc metrics show``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mmvideos.data import storage, tables
from mmvideos.data.atomic import atomic_path, write_json, write_text
from mmvideos.progress import progress_bar

#: The numeric columns of ``label_frame``, before the categorical ones.
NUMERIC_COLUMNS = ["n_visual", "n_audio", "mean_visual_score", "mean_audio_score", "top_visual_score",
                   "top_audio_score"]
NO_AUDIO = "(none)"  # top_audio of a clip whose audio annotator kept no label
RARE_AUDIO = "(other)"  # top_audio of a clip whose top label is rare on both sides
# A top audio label under this share of clips on both sides is pooled into RARE_AUDIO: evidently's
# chi-square expects a reference count for every category, and one clip of a category the
# reference never had would make its p-value 0 and the column "drifted" on its own.
MIN_CATEGORY_SHARE = 0.05
PREVIOUS_RUN, TRAIN_VS_VAL = "previous run", "train vs val"
# Below this many clips on a side the tests have little power and one clip moves a share a lot.
SMALL_SAMPLE = 30


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """``params.yaml: label_drift``."""

    reference: str = ""  # an earlier merge_labels folder, or its labels.parquet (path or gs://); "" = train vs val
    # a series name (a recurring run's): compare with the label table this series last published
    # in the data root (its pointer), then publish this run's; "" = use `reference`
    follow: str = ""
    top_labels: int = 20  # the most frequent labels that get their own 0/1 column
    drift_share: float = 0.5  # the dataset drifted when at least this share of columns drifted
    sample_clips: int = 200_000  # clips of each side evidently tests (a hash sample); label shares count all

    def __post_init__(self) -> None:
        if self.top_labels < 0:
            raise ValueError(f"top_labels must be at least 0, got {self.top_labels}")
        if self.sample_clips < 1:
            raise ValueError(f"sample_clips must be at least 1, got {self.sample_clips}")
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift_share must lie in (0, 1], got {self.drift_share}")


def _modality(label_id: str) -> str:
    return label_id.partition(":")[0]


def column_names(label_ids: Iterable[str], names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Readable, unique column names for label ids: ``"audio:/m/04rlf"`` -> ``"audio: Music"``.

    ImageNet repeats a few names ("crane" the bird and the machine), so a name shared by two of
    the ids gets the id appended.
    """
    names = names or {}
    ids = list(dict.fromkeys(label_ids))
    readable = {i: f"{_modality(i)}: {names.get(i, i.partition(':')[2] or i)}" for i in ids}
    taken = Counter(readable.values())
    return {i: f"{name} ({i.partition(':')[2]})" if taken[name] > 1 else name for i, name in readable.items()}


def label_frame(labels: pd.DataFrame, columns: list[str], names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One flat row per clip of a ``merge_labels`` table, for evidently.

    Args:
        labels: ``labels.parquet`` rows (visual_labels, visual_scores, audio_labels, audio_scores).
        columns: label ids that get a 0/1 column each (1 = the clip carries the label).
        names: label id -> readable name (``vocabulary.parquet``); ids stand in for missing names.

    Returns:
        ``NUMERIC_COLUMNS`` (a clip without labels of a modality scores 0.0 there: its annotator
        found nothing above its threshold), ``top_audio`` (name of the best-scoring audio label,
        ``"(none)"`` without one), then the label columns named by ``column_names``.
    """
    names = names or {}
    rows = []
    for visual, visual_scores, audio, audio_scores in zip(labels["visual_labels"], labels["visual_scores"],
                                                          labels["audio_labels"], labels["audio_scores"]):
        visual_scores = np.asarray(visual_scores, dtype=np.float64)
        audio_scores = np.asarray(audio_scores, dtype=np.float64)
        best_audio = audio[int(np.argmax(audio_scores))] if len(audio) else None
        rows.append({
            "n_visual": len(visual),
            "n_audio": len(audio),
            "mean_visual_score": float(visual_scores.mean()) if visual_scores.size else 0.0,
            "mean_audio_score": float(audio_scores.mean()) if audio_scores.size else 0.0,
            "top_visual_score": float(visual_scores.max()) if visual_scores.size else 0.0,
            "top_audio_score": float(audio_scores.max()) if audio_scores.size else 0.0,
            "top_audio": names.get(best_audio, best_audio) if best_audio else NO_AUDIO,
            "labels": set(visual) | set(audio),
        })
    frame = pd.DataFrame(rows, columns=[*NUMERIC_COLUMNS, "top_audio", "labels"])
    frame[["n_visual", "n_audio"]] = frame[["n_visual", "n_audio"]].astype(np.int64)
    frame[NUMERIC_COLUMNS[2:]] = frame[NUMERIC_COLUMNS[2:]].astype(np.float64)
    frame["top_audio"] = frame["top_audio"].astype(str)
    carried = frame.pop("labels")
    for label_id, column in column_names(columns, names).items():
        frame[column] = np.fromiter((label_id in s for s in carried), dtype=np.int64, count=len(carried))
    return frame


def _table_uris(location: str) -> tuple[str, str]:
    """A labels folder or ``labels.parquet`` path/URI -> (labels URI, vocabulary URI next to it)."""
    location = str(location).rstrip("/")
    labels = location if location.endswith(".parquet") else f"{location}/labels.parquet"
    folder = labels.rpartition("/")[0] if storage.is_gcs(labels) else str(Path(labels).parent)
    return labels, f"{folder}/vocabulary.parquet"


def read_names(location: str | Path) -> dict[str, str]:
    """``{label id: name}`` from the ``vocabulary.parquet`` beside a ``merge_labels`` output (empty without one)."""
    try:
        with storage.local_copy(_table_uris(str(location))[1]) as path:
            vocabulary = pd.read_parquet(path, columns=["id", "name"])
    except FileNotFoundError:
        return {}
    return dict(zip(vocabulary["id"], vocabulary["name"]))


#: The label table's columns the report reads.
COLUMNS = ["clip_id", "split", "visual_labels", "visual_scores", "audio_labels", "audio_scores"]


class Side:
    """One side of the comparison, read in row batches: a label table, or one split of it.

    Memory does not grow with the table: :meth:`count` keeps a count per label (bounded by the
    vocabulary) and :meth:`sampled` the rows of a hash sample of at most about ``sample`` clips.
    Two splits of one table are read together, one pass each for counting and sampling
    (:func:`read_sides`).
    """

    def __init__(self, path: Path, split: str | None = None) -> None:
        self.path, self.split = path, split
        self.clips, self.label_counts = 0, Counter()

    def rows(self, batch: pd.DataFrame) -> pd.DataFrame:
        """This side's rows of a batch of the table."""
        return batch if self.split is None else batch[batch["split"] == self.split]

    def count(self, batch: pd.DataFrame) -> None:
        """Count the clips of a batch and, per label id, the clips carrying it."""
        batch = self.rows(batch)
        self.clips += len(batch)
        for visual, audio in zip(batch["visual_labels"], batch["audio_labels"]):
            self.label_counts.update(set(visual) | set(audio))

    def shares(self) -> pd.Series:
        """Share of clips carrying each label id (visual and audio, as annotated), most frequent first."""
        shares = pd.Series(self.label_counts, dtype=np.float64) / max(self.clips, 1)
        return shares.sort_index().sort_values(ascending=False, kind="stable")

    def sampled(self, batch: pd.DataFrame, columns: list[str], names: Mapping[str, str], sample: int) -> pd.DataFrame:
        """:func:`label_frame` of a batch's clips whose hash falls in the first ``sample / clips`` of the
        range (every clip when there are at most ``sample``); after every batch was counted."""
        batch, fraction = self.rows(batch), min(1.0, sample / max(self.clips, 1))
        if fraction < 1.0:
            batch = batch[np.fromiter((in_sample(c, fraction) for c in batch["clip_id"]), bool, len(batch))]
        return label_frame(batch, columns, names)


def _table_batches(sides: list[Side], batch_rows: int) -> Iterable[tuple[pd.DataFrame, list[int]]]:
    """Every batch of every table the sides read, with the sides that read it: one pass per table."""
    for path in dict.fromkeys(side.path for side in sides):
        readers = [i for i, side in enumerate(sides) if side.path == path]
        for batch in tables.read_batches(path, batch_rows, COLUMNS):
            yield batch.to_pandas(), readers


def read_sides(sides: list[Side], batch_rows: int = tables.BATCH_ROWS) -> list[Side]:
    """Count every side (sides that are splits of one table share its pass)."""
    for batch, readers in _table_batches(sides, batch_rows):
        for i in readers:
            sides[i].count(batch)
    return sides


def sample_frames(sides: list[Side], columns: list[str], names: Mapping[str, str], sample: int,
                  batch_rows: int = tables.BATCH_ROWS) -> list[pd.DataFrame]:
    """Each side's :meth:`Side.sampled` rows in table order (sides that are splits of one table share its pass)."""
    parts: list[list[pd.DataFrame]] = [[] for _ in sides]
    for batch, readers in _table_batches(sides, batch_rows):
        for i in readers:
            parts[i].append(sides[i].sampled(batch, columns, names, sample))
    empty = label_frame(pd.DataFrame(columns=COLUMNS), columns)
    return [pd.concat(part, ignore_index=True) if part else empty for part in parts]


#: evidently's element ids, made anew on every render: UUIDs and ``metric_<32 hex digits>``.
_PAGE_IDS = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b|(?<=metric_)[0-9a-f]{32}\b")


def stable_ids(page: str) -> str:
    """evidently's page with its random element ids numbered in order of first appearance (each id
    kept the same wherever it recurs), so that one report always gives the same bytes."""
    numbered: dict[str, str] = {}

    def number(match: re.Match) -> str:
        if (found := match[0]) not in numbered:
            n = len(numbered) + 1
            numbered[found] = str(uuid.UUID(int=n)) if "-" in found else f"{n:032x}"
        return numbered[found]

    return _PAGE_IDS.sub(number, page)


def in_sample(clip_id: str, fraction: float) -> bool:
    """Whether a clip is in a hash sample of ``fraction`` of the clips (the same on every run)."""
    return int.from_bytes(hashlib.blake2b(clip_id.encode(), digest_size=8).digest(), "little") < fraction * 2 ** 64


def pool_rare_categories(reference: pd.Series, current: pd.Series,
                          min_share: float = MIN_CATEGORY_SHARE) -> tuple[pd.Series, pd.Series]:
    """Replace values under ``min_share`` of both series by ``"(other)"`` (see ``MIN_CATEGORY_SHARE``)."""
    shares = pd.concat([reference.value_counts(normalize=True), current.value_counts(normalize=True)], axis=1)
    kept = set(shares.index[shares.fillna(0.0).max(axis=1) >= min_share])
    return reference.where(reference.isin(kept), RARE_AUDIO), current.where(current.isin(kept), RARE_AUDIO)


def _evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, label_columns: list[str], drift_share: float):
    """Run ``DataDriftPreset`` over the frames; returns the evidently snapshot."""
    # Imported here: evidently takes seconds to import and only this stage needs it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    # Declared, not inferred: 0/1 label columns are categories (a Z-test of two proportions),
    # which evidently would otherwise guess from the values.
    definition = DataDefinition(numerical_columns=list(NUMERIC_COLUMNS),
                                categorical_columns=["top_audio", *label_columns])
    # include_tests: each column's drift verdict comes back as a test (FAIL = drifted), so the
    # summary reuses evidently's own decision whichever statistical test it chose.
    report = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True)
    # A column that is constant on one side (every clip has 10 visual labels) makes evidently's
    # correlation plots divide 0 by 0; the drift tests do not use those values.
    with np.errstate(divide="ignore", invalid="ignore"):
        return report.run(current_data=Dataset.from_pandas(current, data_definition=definition),
                          reference_data=Dataset.from_pandas(reference, data_definition=definition))


def _status(test: dict) -> str:
    return str(getattr(test["status"], "value", test["status"]))


def drift_verdicts(snapshot: dict) -> tuple[dict[str, dict], bool, float]:
    """Per-column drift and the dataset verdict from an evidently snapshot dict.

    Returns ``{column: {method, score, threshold, drifted}}``, whether the dataset drifted
    (evidently's "share of drifted columns" test failed), and the share of drifted columns.
    """
    failed = {t["metric_config"]["metric_id"] for t in snapshot["tests"] if _status(t) == "FAIL"}
    columns, dataset_drift, share = {}, False, 0.0
    for metric in snapshot["metrics"]:
        kind = metric["config"]["type"]
        if kind.endswith(":ValueDrift"):
            columns[metric["config"]["column"]] = {
                "method": metric["config"]["method"], "score": round(float(metric["value"]), 6),
                "threshold": metric["config"]["threshold"], "drifted": metric["id"] in failed}
        elif kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            dataset_drift = metric["id"] in failed
    return columns, dataset_drift, share


#: The summary's keys that ``metrics.json`` carries.
HEADLINE = ("mode", "reference_clips", "current_clips", "columns", "drifted_columns", "drifted_share",
            "dataset_drift", "small_sample")


def _write_summary(summary: dict, out_dir: Path) -> None:
    write_json(summary, out_dir / "summary.json")
    write_json({key: summary[key] for key in HEADLINE if key in summary}, out_dir / "metrics.json")


def _explain(out_dir: Path, summary: dict, reason: str) -> dict:
    summary = {**summary, "columns": 0, "drifted_columns": 0, "drifted_share": 0.0, "dataset_drift": False,
               "drifted": [], "explanation": reason}
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Label drift</title></head><body>"
            f"<h1>Label drift: not computed</h1><p>{html.escape(reason)}</p>"
            f"<p>Mode: {html.escape(summary['mode'])}; reference clips: {summary['reference_clips']}; "
            f"current clips: {summary['current_clips']}.</p></body></html>\n")
    write_text(page, out_dir / "drift.html")
    # A snapshot left by an earlier run in this folder would contradict this page.
    (out_dir / "drift.json").unlink(missing_ok=True)
    _write_summary(summary, out_dir)
    return summary


def _method(reference: Side, current: Side, reference_rows: int, current_rows: int, cfg: DriftConfig) -> str:
    """How the report was computed, in a sentence for the page and the summary."""
    sampled = reference_rows < reference.clips or current_rows < current.clips
    return (f"Method: label shares counted over every clip ({reference.clips:,} reference, {current.clips:,} current, "
            "read in row batches); evidently's DataDriftPreset on "
            + (f"a hash sample of {reference_rows:,} reference and {current_rows:,} current clips (about "
               f"label_drift.sample_clips = {cfg.sample_clips:,} a side, the same clips on every run)" if sampled
               else "every clip") + f"; the {len(NUMERIC_COLUMNS)} per-clip numbers, the top audio label and the "
            f"top {cfg.top_labels} labels' 0/1 columns.")


#: Where the data root keeps, per series (``DriftConfig.follow``), the last label table it published.
POINTERS = "pointers/label_drift"


def _pointer(root: str, series: str) -> str:
    if not series.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"label_drift.follow {series!r}: use letters, digits, '-', '_' and '.' only")
    return storage.join(root, POINTERS, f"{series}.json")


def previous_labels(root: str, series: str) -> str | None:
    """The label table ``series`` last published in the data root ``root``, ``None`` before its first."""
    pointer = _pointer(root, series)
    return json.loads(storage.read_bytes(pointer))["labels"] if storage.exists(pointer) else None


def publish_labels(root: str, series: str, labels: str) -> None:
    """Point ``series`` at the label table ``labels`` (atomically: the next run reads it or the last)."""
    storage.put_bytes(json.dumps({"labels": str(labels)}).encode(), _pointer(root, series))


def label_drift(labels_dir: str | Path, out_dir: str | Path, cfg: DriftConfig = DriftConfig(),
                progress: bool = True, root: str | None = None, published: str | None = None) -> dict:
    """Compare a ``merge_labels`` output with a reference and report label drift (module docstring).

    The reference is the earlier run ``cfg.reference`` (mode "previous run", all clips of both)
    or, when that is empty, the ``train`` split of the same table against its ``val`` split
    (mode "train vs val": does validation look like training?). An empty side yields an
    explanatory ``drift.html`` and summary instead of a report.

    Args:
        labels_dir: the merge_labels folder (or its ``labels.parquet``), local or gs://.
        out_dir: where ``drift.html``, ``drift.json`` and ``summary.json`` go.
        cfg: reference, label columns and dataset threshold.
        progress: show a progress bar over the steps.
        root: the data root; with ``cfg.follow`` set, the reference is the label table that
            series last published there (else ``cfg.reference``), and this run's is published.
        published: the URI to publish for this run's table (default ``labels_dir``; in a pipeline
            the artifact's ``gs://`` URI, which outlives the pod).

    Returns:
        The summary (also ``summary.json``).
    """
    out_dir = Path(out_dir)
    if cfg.follow:
        if not root:
            raise ValueError("label_drift.follow needs a data root (where the series' pointer lives)")
        cfg = dataclasses.replace(cfg, reference=previous_labels(root, cfg.follow) or cfg.reference)
        summary = label_drift(labels_dir, out_dir, dataclasses.replace(cfg, follow=""), progress)
        publish_labels(root, cfg.follow, published or str(labels_dir))
        return summary | {"follow": cfg.follow}
    with contextlib.ExitStack() as stack:
        current_path = stack.enter_context(storage.local_copy(_table_uris(str(labels_dir))[0]))
        reference_path = stack.enter_context(storage.local_copy(_table_uris(cfg.reference)[0])) if cfg.reference else None
        return _label_drift(current_path, reference_path, read_names(labels_dir), out_dir, cfg, progress)


def _label_drift(current_path: Path, reference_path: Path | None, names: dict[str, str], out_dir: Path,
                 cfg: DriftConfig, progress: bool) -> dict:
    steps = progress_bar(total=3, desc="label_drift", unit="step", disable=not progress)
    if reference_path is not None:
        mode = PREVIOUS_RUN
        reference, current = read_sides([Side(reference_path), Side(current_path)])
        names = {**read_names(cfg.reference), **names}
    else:
        mode = TRAIN_VS_VAL
        reference, current = read_sides([Side(current_path, "train"), Side(current_path, "val")])
    steps.update()
    summary = {"mode": mode, "reference": cfg.reference, "reference_clips": reference.clips,
               "current_clips": current.clips, "drift_share": cfg.drift_share}
    if not reference.clips or not current.clips:
        steps.close()
        empty = "reference" if not reference.clips else "current"
        what = {TRAIN_VS_VAL: {"reference": "no train clips", "current": "no val clips"},
                PREVIOUS_RUN: {"reference": "the reference run has no clips", "current": "this run has no clips"}}
        return _explain(out_dir, summary, f"Nothing to compare: {what[mode][empty]}.")

    reference_shares, current_shares = reference.shares(), current.shares()
    # Ranked by the larger of the two shares, so a label that only became common in the
    # current data still gets a column; ties broken by id for a stable choice.
    either = pd.concat([reference_shares, current_shares], axis=1).fillna(0.0).max(axis=1)
    chosen = either.sort_index().sort_values(ascending=False, kind="stable").index[: cfg.top_labels].tolist()
    readable = column_names(chosen, names)
    reference_frame, current_frame = sample_frames([reference, current], chosen, names, cfg.sample_clips)
    reference_frame["top_audio"], current_frame["top_audio"] = pool_rare_categories(reference_frame["top_audio"],
                                                                                    current_frame["top_audio"])
    snapshot = _evidently_drift(reference_frame, current_frame, list(readable.values()), cfg.drift_share)
    steps.update()

    method = _method(reference, current, len(reference_frame), len(current_frame), cfg)
    with atomic_path(out_dir / "drift.html") as tmp:
        snapshot.save_html(str(tmp))
        note = f"<body><p style='font-family:sans-serif'>{html.escape(method, quote=False)}</p>"
        Path(tmp).write_text(stable_ids(Path(tmp).read_text()).replace("<body>", note, 1))
    snapshot_dict = snapshot.dict()
    write_json(snapshot_dict, out_dir / "drift.json")
    per_column, dataset_drift, share = drift_verdicts(snapshot_dict)
    drifted = [name for name, verdict in per_column.items() if verdict["drifted"]]
    summary.update({
        "columns": len(per_column), "drifted_columns": len(drifted), "drifted_share": round(share, 4),
        "dataset_drift": dataset_drift, "drifted": drifted, "per_column": per_column,
        "label_shares": {readable[i]: {"reference": round(float(reference_shares.get(i, 0.0)), 4),
                                       "current": round(float(current_shares.get(i, 0.0)), 4)} for i in chosen},
        "small_sample": min(reference.clips, current.clips) < SMALL_SAMPLE,
        "sampled_clips": {"reference": len(reference_frame), "current": len(current_frame)}, "method": method,
    })
    _write_summary(summary, out_dir)
    steps.update()
    steps.close()
    return summary
