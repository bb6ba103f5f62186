"""The label audit page: what is behind "Chihuahua (38)".

For each of the most frequent labels, the clips that carry it with the highest scores: three
thumbnails of their frames (first, middle, last) and a player of their sound, so that a person can
judge at a glance whether the annotators' labels describe the clips. One self-contained HTML file
(JPEG thumbnails and Opus audio inlined as ``data:`` URIs, no script), sized to fit what the
Kubeflow UI shows (:data:`mmvideos.cluster.pages.PAGE_LIMIT_BYTES`): a label's clips are left out,
last label first, until it does.

Memory: the label table is scanned a row batch at a time (only the chosen labels' entries are
kept, the best few per label), and the clip table and clip manifest are read filtered to the
clips shown, so the page costs the same memory at 15 M clips as on the demo.
"""

from __future__ import annotations

import base64
import html
import io
import heapq
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmvideos.cluster.pages import PAGE_LIMIT_BYTES
from mmvideos.data import storage, tables
from mmvideos.data.atomic import write_text
from mmvideos.data.dataroot import DataRoot

THUMBNAIL_PX = 112
#: Opus bit rate of the inlined sound: about 3 KB per second of clip.
AUDIO_BITRATE = 24000


def _thumbnail(jpeg: bytes) -> str:
    from PIL import Image

    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=70)
    return base64.b64encode(out.getvalue()).decode()


def _opus(samples: np.ndarray, rate: int) -> str:
    """Mono float samples -> base64 of an Ogg Opus file (what every browser's <audio> plays)."""
    import av

    out = io.BytesIO()
    # bitexact: the Ogg stream serial number from the stream's index, not drawn at random, so the
    # page comes out byte-identical on every run (DVC tracks it)
    with av.open(out, "w", format="ogg", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.bit_rate = AUDIO_BITRATE
        stream.layout = "mono"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return base64.b64encode(out.getvalue()).decode()


def _filtered(uri: str, column: str, values: set[str], columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of parquet table ``uri`` whose ``column`` is one of ``values`` (read row group by
    row group, the filter pushed into the scan)."""
    with storage.local_copy(uri) as path:
        # no values: pyarrow refuses an empty "in" filter; an always-false one keeps the schema
        keep = [(column, "in", sorted(values))] if values else [(column, "=", None)]
        return pq.read_table(path, columns=columns, filters=keep).to_pandas()


def _best(labels_uri: str, chosen: pd.DataFrame, per_label: int) -> dict[str, list[tuple[str, float]]]:
    """``{label id: [(clip_id, score), ...]}``: the ``per_label`` highest-scored clips of each
    chosen label (ties: the earlier row), over the label table a row batch at a time."""
    modality_of = {str(label.id): str(label.modality) for label in chosen.itertuples(index=False)}
    kept: dict[str, list[tuple[float, int, str]]] = {label: [] for label in modality_of}
    row = 0
    with storage.local_copy(labels_uri) as path:
        columns = ["clip_id", *(f"{m}_{part}" for m in sorted(set(modality_of.values())) for part in ("labels", "scores"))]
        for batch in tables.read_batches(path, columns=columns):
            for modality in sorted(set(modality_of.values())):
                ids, scores = batch.column(f"{modality}_labels"), batch.column(f"{modality}_scores")
                wanted = [label for label, m in modality_of.items() if m == modality]
                flat = pc.list_flatten(ids)
                hit = pc.is_in(flat, value_set=pa.array(wanted)).to_numpy(zero_copy_only=False)
                if not hit.any():
                    continue
                rows = pc.list_parent_indices(ids).to_numpy()[hit]
                found = flat.to_numpy(zero_copy_only=False)[hit]
                values = pc.list_flatten(scores).to_numpy(zero_copy_only=False)[hit]
                clips = batch.column("clip_id").take(pa.array(rows)).to_pylist()
                for label, score, r, clip in zip(found, values, rows, clips):
                    item = (float(score), -(row + int(r)), clip)
                    heap = kept[label]
                    (heapq.heappush if len(heap) < per_label else heapq.heappushpop)(heap, item)
            row += batch.num_rows
    return {label: [(clip, score) for score, _, clip in sorted(heap, reverse=True)] for label, heap in kept.items()}


def _media(clips_dir: str | Path, clips: pd.DataFrame, root: DataRoot) -> dict[str, dict]:
    """``{clip_id: {"thumbs": [base64 JPEG], "audio": base64 Opus}}`` of the clips in ``clips`` (rows
    of the clip table), each of their shards read once (the manifest names them relative to the data root)."""
    from mmvideos.data import shards

    wanted = set(clips["clip_id"])
    manifest = _filtered(storage.join(clips_dir, "manifest.parquet"), "video_id", set(clips["video_id"]))
    media: dict[str, dict] = defaultdict(dict)
    for row in manifest.itertuples(index=False):
        for clip_id, group in shards.iter_shard(root.resolve(row.uri), row.sha256):
            if clip_id not in wanted:
                continue
            if row.file == "frames.tar":
                names = sorted(group)
                picks = sorted({names[0], names[len(names) // 2], names[-1]})
                media[clip_id]["thumbs"] = [_thumbnail(group[name]) for name in picks]
            elif row.file == "audio.tar":
                media[clip_id]["audio"] = _opus(*shards.read_wav(group["wav"]))
    return media


def _section(name: str, count: int, modality: str, picks: list[tuple[str, float]], media: dict, clips: pd.DataFrame
             ) -> str:
    spans = clips.set_index("clip_id")
    cards = []
    for clip_id, score in picks:
        item, span = media.get(clip_id, {}), spans.loc[clip_id]
        thumbs = "".join(f"<img alt='frame' src='data:image/jpeg;base64,{t}'>" for t in item.get("thumbs", []))
        sound = (f"<audio controls preload='metadata' src='data:audio/ogg;base64,{item['audio']}'></audio>"
                 if "audio" in item else "")
        cards.append(f"<figure>{thumbs}<br>{sound}<figcaption>{html.escape(clip_id)} "
                     f"({span['start_s']:.1f}-{span['end_s']:.1f} s), score {score:.3f}</figcaption></figure>")
    return (f"<section><h2>{html.escape(name)} <small>({count} clips, {modality})</small></h2>"
            + "".join(cards) + "</section>")


def label_audit(clips_dir: str | Path, labels_dir: str | Path, target: str | Path, top: int = 12,
                per_label: int = 2, root: DataRoot | None = None) -> dict:
    """Write the audit page of the ``top`` most frequent labels to ``target``; returns what it
    shows. ``root``: the data root the clip units live in (the clip folder's manifest names them
    relative to it)."""
    vocabulary = storage.read_parquet(storage.join(labels_dir, "vocabulary.parquet"))
    chosen = vocabulary.sort_values("count", ascending=False, kind="stable").head(top)
    picks = _best(storage.join(labels_dir, "labels.parquet"), chosen, per_label)
    wanted = {c for best in picks.values() for c, _ in best}
    clips = _filtered(storage.join(clips_dir, "clips.parquet"), "clip_id", wanted)
    media = _media(clips_dir, clips, root or DataRoot(""))
    sections = [_section(str(label.name), int(label.count), str(label.modality), picks[label.id], media, clips)
                for label in chosen.itertuples(index=False)]
    head = ("<!doctype html><html><head><meta charset='utf-8'><title>Label audit</title><style>"
            "body{font-family:system-ui,sans-serif;margin:1.5em}section{margin-bottom:1.2em}"
            "figure{display:inline-block;margin:0 1.2em .6em 0;vertical-align:top}img{margin-right:2px}"
            "audio{width:340px;height:32px}figcaption{font-size:.8em;color:#555}</style></head><body>"
            f"<h1>Label audit: the {len(sections)} most frequent labels</h1><p>For each label, the {per_label} clips "
            "the annotators gave it with the highest scores: their first, middle and last frame and their sound. "
            "Do the labels describe the clips?</p>")
    shown = len(sections)
    while shown and len((page := head + "".join(sections[:shown]) + "</body></html>\n").encode()) > PAGE_LIMIT_BYTES:
        shown -= 1
    if shown < len(sections):
        page = page.replace("</body>", f"<p>{len(sections) - shown} more labels left out to stay under "
                                       f"{PAGE_LIMIT_BYTES >> 20} MiB.</p></body>")
    write_text(page if sections else head + "<p>No labels.</p></body></html>\n", target)
    return {"labels_shown": shown, "clips_shown": sum(len(picks[label.id]) for label in chosen.head(shown).itertuples()),
            "bytes": Path(target).stat().st_size}
