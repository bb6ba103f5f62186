"""Landmark audio fingerprints for benchmark overlap: copies that were sped up, time-stretched,
pitch-shifted or mixed under loud noise.

Chromaprint (:mod:`mmvideos.stages.overlap`) recognises the same recording at the same speed; a
2% speed change or pink noise at 0 dB already defeats it. This is the peak-pair ("landmark")
fingerprint of Wang's Shazam paper (2003), the scheme audfprint and Panako build on, with
queries scanned over speed, tempo and pitch:

* **Peaks.** A 64-ms Hann STFT every 16 ms at 16 kHz, 125 Hz - 4 kHz. A peak is a bin that is
  the maximum of its 240 ms x 330 Hz neighbourhood, 10 dB above its frame's median, in a frame
  louder than about -48 dBFS, and *changing*: its level varies over the surrounding half second.
  Silence and DC have no peaks, a steady tone or hum has none either; the 30 strongest per second
  are kept. A peak is stored as (frame, semitones above 125 Hz).
* **Hashes.** Each peak is paired with the next :data:`FAN_OUT` peaks within 0.64 s and 18
  semitones: (its pitch, the pitch difference, the time difference), all rounded. Noise hides
  some peaks but the loudest ones of the clip survive, so a fraction of the pairs still match.
* **Speed, tempo and pitch.** A speed change moves every pitch by the same number of semitones
  and scales time; a tempo change scales time only; a pitch shift moves pitch only. The
  benchmark clips' peaks are transformed over :data:`GRID` (speed and tempo 0.90-1.10 in small
  steps, pitch 0.90-1.10) and every variant is indexed, so an edited copy meets the variant it
  was made like.
* **Voting.** A video's hashes look up the index and vote for (clip, variant, time offset): a copy
  puts many votes on one offset, unrelated audio scatters a few. A video matches the clip with
  the most votes at one offset when they reach ``ingest.fingerprint.min_votes``.

Why this and not an embedding (YAMNet's): embeddings say "both are dogs barking", which would
reject every video of a barking dog; a landmark match says "this is that recording".
"""

from __future__ import annotations

import base64
import dataclasses

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256                      # 16 ms: 62.5 frames per second
LOW_BIN, HIGH_BIN = 8, 256     # 125 Hz .. 4 kHz
FLOOR_DB = 0.0                 # a frame needs a bin above this (about -48 dBFS for a sine) to hold peaks
PEAK_SIZE = (15, 21)           # the neighbourhood a peak tops: frames x bins
ABOVE_MEDIAN_DB = 10.0
STEADY = 31                    # frames (0.5 s) over which a peak's bin must vary ...
STEADY_VAR_DB2 = 1.0           # ... by more than this variance (dB^2)
PEAKS_PER_S = 30
FAN_OUT = 4
MAX_DT = 40                    # frames (0.64 s) between the two peaks of a pair
MAX_DQ = 18                    # semitones between them
DT_STEP = 2.0                  # frames per time-difference step of a hash
OFFSET_STEP = 2.0              # frames per offset bin of the vote

#: (time factor, pitch shift in semitones) of each indexed variant of a benchmark clip: speed
#: s scales time by 1/s and shifts pitch by 12 log2 s; tempo r scales time by 1/r; pitch p
#: shifts pitch only. The steps keep a copy made between two of them within a hash's rounding.
GRID = tuple([(1 / s, 12 * np.log2(s)) for s in np.round(np.arange(0.90, 1.101, 0.02), 2)]
             + [(1 / r, 0.0) for r in np.round(np.arange(0.90, 1.101, 0.01), 2) if r != 1.0]
             + [(1.0, 12 * np.log2(p)) for p in np.round(np.arange(0.90, 1.101, 0.04), 2) if p != 1.0])


def peaks(samples: np.ndarray) -> np.ndarray:
    """16 kHz mono float samples -> ``[n, 2]`` float32 peaks (frame, semitones above 125 Hz), by time."""
    from scipy.ndimage import maximum_filter, uniform_filter1d

    samples = np.asarray(samples, dtype=np.float32)
    if samples.size < N_FFT:
        return np.zeros((0, 2), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP] * np.hanning(N_FFT).astype(np.float32)
    level = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1))[:, LOW_BIN:HIGH_BIN] + 1e-3)  # [T, F] dB
    loud = level.max(1, keepdims=True) > FLOOR_DB
    tops = level == maximum_filter(level, size=PEAK_SIZE, mode="nearest")
    prominent = level > np.median(level, axis=1, keepdims=True) + ABOVE_MEDIAN_DB
    smooth = uniform_filter1d(level, STEADY, axis=0, mode="nearest")
    moving = uniform_filter1d((level - smooth) ** 2, STEADY, axis=0, mode="nearest") > STEADY_VAR_DB2
    t, f = np.nonzero(tops & prominent & moving & loud)
    strength = level[t, f]
    keep = []
    per_s = SAMPLE_RATE / HOP
    for second in np.unique((t // per_s).astype(np.int64)):
        chosen = np.flatnonzero((t // per_s).astype(np.int64) == second)
        keep.append(chosen[np.argsort(-strength[chosen], kind="stable")[:PEAKS_PER_S]])
    keep = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    hz = (f[keep] + LOW_BIN) * SAMPLE_RATE / N_FFT
    return np.stack([t[keep], 12 * np.log2(hz / 125.0)], axis=1).astype(np.float32)


def encode(points: np.ndarray) -> str:
    """Peaks as a compact string for the probe record: frame (uint32) and pitch (float16) arrays."""
    frames = points[:, 0].astype("<u4").tobytes()
    pitch = points[:, 1].astype("<f2").tobytes()
    return base64.b64encode(len(points).to_bytes(4, "little") + frames + pitch).decode("ascii")


def decode(encoded: str) -> np.ndarray:
    """The peaks :func:`encode` wrote (``[0, 2]`` for "")."""
    if not encoded:
        return np.zeros((0, 2), dtype=np.float32)
    raw = base64.b64decode(encoded)
    n = int.from_bytes(raw[:4], "little")
    frames = np.frombuffer(raw, "<u4", n, 4).astype(np.float32)
    pitch = np.frombuffer(raw, "<f2", n, 4 + 4 * n).astype(np.float32)
    return np.stack([frames, pitch], axis=1)


def hashes(points: np.ndarray, stretch: float = 1.0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Peak pairs of ``points`` with time scaled by ``stretch`` and pitch moved by ``shift``
    semitones: (int64 hash codes, the anchor's time in frames)."""
    t = points[:, 0].astype(np.float64) * stretch
    q = points[:, 1].astype(np.float64) + shift
    codes, times = [], []
    for lag in range(1, 4 * FAN_OUT):  # the next peaks in time order; FAN_OUT usable ones at most
        dt, dq = t[lag:] - t[:-lag], q[lag:] - q[:-lag]
        usable = (dt >= 1) & (dt <= MAX_DT) & (np.abs(dq) <= MAX_DQ)
        codes.append(np.where(usable, (np.round(q[:-lag]) * 64 + np.round(dq) + 32) * 64 + np.round(dt / DT_STEP),
                              -1).astype(np.int64))
        times.append(t[:-lag])
    if not codes or not codes[0].size:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    width = len(points)
    code = np.full((len(codes), width), -1, dtype=np.int64)
    time = np.zeros((len(codes), width))
    for lag, (c, tt) in enumerate(zip(codes, times)):
        code[lag, :c.size], time[lag, :c.size] = c, tt
    # each anchor keeps its first FAN_OUT usable partners
    rank = np.cumsum(code >= 0, axis=0)
    chosen = (code >= 0) & (rank <= FAN_OUT)
    return code[chosen], time[chosen]


@dataclasses.dataclass(frozen=True)
class Hit:
    """The benchmark clip a video matches best: its index, the votes at one offset, the variant."""

    clip: int
    votes: int
    variant: int

    def describe(self) -> str:
        """The evidence in words, for the reject reason."""
        stretch, shift = GRID[self.variant]
        return (f"{self.votes} landmark pairs at one offset, time x{stretch:.2f}, "
                f"pitch {shift:+.1f} semitones")


class BenchmarkIndex:
    """Every :data:`GRID` variant of the benchmark clips' peak pairs, sorted by hash code."""

    def __init__(self, clips: list[np.ndarray]) -> None:
        parts = []
        for clip, points in enumerate(clips):
            for variant, (stretch, shift) in enumerate(GRID):
                code, time = hashes(points, stretch, shift)
                parts.append((code, np.full(code.size, clip * len(GRID) + variant), time))
        code = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        order = np.argsort(code, kind="stable")
        self.code = code[order]
        self.owner = np.concatenate([p[1] for p in parts])[order] if parts else np.zeros(0, dtype=np.int64)
        self.time = np.concatenate([p[2] for p in parts])[order] if parts else np.zeros(0)

    def best(self, points: np.ndarray) -> Hit | None:
        """The clip with the most votes at one time offset, or None when nothing is shared."""
        code, time = hashes(points)
        lo, hi = np.searchsorted(self.code, code, "left"), np.searchsorted(self.code, code, "right")
        if not (hi > lo).any():
            return None
        query = np.repeat(np.arange(code.size), hi - lo)
        rows = np.concatenate([np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist()) if b > a])
        offset = np.round((time[query] - self.time[rows]) / OFFSET_STEP).astype(np.int64)
        span = int(np.abs(offset).max()) + 1
        key = self.owner[rows] * (2 * span + 1) + offset + span
        # one vote per query pair and (variant, offset): a repeated hash cannot vote twice
        key = np.unique(key * (code.size + 1) + query) // (code.size + 1)
        keys, votes = np.unique(key, return_counts=True)
        top = int(np.argmax(votes))
        clip, variant = divmod(int(keys[top]) // (2 * span + 1), len(GRID))
        return Hit(clip, int(votes[top]), variant)
