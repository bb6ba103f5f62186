"""``mmvideos bench --leakage``: the leakage guard's detection table on a generated set.

Ten benchmark clips (espeak-ng speech, padded with digital silence to 5 s as ESC-50 pads), each
inserted at 3 s into a 10-s AAC video over pink noise at -50 dBFS after one of :data:`EDITS`,
beside twenty negatives that hold no benchmark clip (:func:`negatives`: digital silence, DC,
noise beds, tones, beeps followed by silence, unrelated speech beside silence). The same set
backs ``tests/test_landmarks.py``. Writes ``leakage.md`` and ``leakage.json``: recall per edit and
false matches for a range of ``ingest.fingerprint.min_votes``, and the votes they come from.
"""

from __future__ import annotations

import fractions
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from mmvideos.bench import save
from mmvideos.data import media
from mmvideos.demo.synth_media import write_media
from mmvideos.stages import landmarks

RATE = 16000
CLIPS = ["The dog barked at the cat twice and ran away.", "Rain falls on the old roof all night long.",
         "Seven hungry cats waited by the kitchen door.", "The quick brown fox jumps over the lazy dog.",
         "Tonight the river bridge reopens after repairs.", "Heavy rain in the north, sunny spells in the south.",
         "Switch off the lights and lock every window.", "A door slams somewhere upstairs in the house.",
         "Please pass the salt and the pepper to your sister.", "Our train leaves at nine from platform four."]
OTHER = ["Welcome back to the lecture about sound in water.", "The band plays a slow waltz in the park today.",
         "My grandmother grows tomatoes and beans every summer."]
#: The edits and the recall each must reach (issue 25's bar).
EDITS = {"reencode": 0.95, "gain": 0.95, "tempo0.9": 0.95, "tempo1.1": 0.95, "speed0.9": 0.8, "speed1.1": 0.8,
         "pitch0.9": 0.8, "pitch1.1": 0.8, "noise0dB": 0.8}
THRESHOLDS = (6, 10, 14, 18, 22, 26, 30, 40)


def speech(text: str, out: Path) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng into ``out`` (WAV); returns (float32 samples, rate)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is needed for generated speech (`make system-deps` installs it)")
    subprocess.run(["espeak-ng", "-w", str(out), text], check=True, capture_output=True)
    with wave.open(str(out)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, wav.getframerate()


def said(text: str, folder: Path, name: str) -> np.ndarray:
    """``text`` spoken, at 16 kHz."""
    samples, rate = speech(text, folder / f"{name}.wav")
    return np.interp(np.arange(0, samples.size, rate / RATE), np.arange(samples.size), samples).astype(np.float32)


def pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` samples of unit-variance pink noise."""
    freqs = np.fft.rfftfreq(n)
    spectrum = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / noise.std()).astype(np.float32)


def seconds(*parts: np.ndarray | float) -> np.ndarray:
    """Samples and stretches of digital silence (given in seconds) one after another."""
    return np.concatenate([np.zeros(int(p * RATE), np.float32) if isinstance(p, float) else p for p in parts])


def negatives(rng: np.random.Generator, other: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Twenty videos' sound that holds no benchmark clip; ``other``: three unrelated utterances."""
    t = np.arange(6 * RATE) / RATE
    beep = 0.3 * np.sin(2 * np.pi * 1000 * t[: int(0.6 * RATE)]).astype(np.float32)
    return {
        **{f"silence_{s}s": seconds(float(s)) for s in (3, 6, 9)},
        "dc": np.full(6 * RATE, 0.2, np.float32),
        **{f"noise_bed_{db}dB": pink(rng, 6 * RATE) * np.float32(10 ** (db / 20)) for db in (-60, -50, -40)},
        **{f"tone_{hz}Hz": (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32) for hz in (440, 1000, 3000)},
        **{f"beep_then_silence_{s}s": seconds(beep, float(s)) for s in (3, 5)},
        "beep_in_noise_bed": seconds(beep, 5.0) + pink(rng, int(5.6 * RATE)) * np.float32(10 ** (-50 / 20)),
        **{f"speech_then_silence_{k}": seconds(o, 5.0) for k, o in enumerate(other)},
        **{f"silence_then_speech_{k}": seconds(5.0, o) for k, o in enumerate(other)},
        "tone_then_silence": seconds((0.3 * np.sin(2 * np.pi * 440 * t[: 2 * RATE])).astype(np.float32), 4.0),
    }


def atempo(samples: np.ndarray, factor: float) -> np.ndarray:
    """16 kHz ``samples`` played ``factor`` times as fast at the same pitch, by FFmpeg's ``atempo``
    filter (WSOLA, what video editors use), through PyAV."""
    import av
    import av.filter

    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=RATE, layout="mono", time_base=fractions.Fraction(1, RATE))
    stretch, sink = graph.add("atempo", f"{factor}"), graph.add("abuffersink")
    source.link_to(stretch)
    stretch.link_to(sink)
    graph.configure()
    out = []

    def drain() -> None:
        while True:
            try:
                out.append(graph.pull().to_ndarray().reshape(-1))
            except (av.BlockingIOError, av.EOFError):
                return

    for start in range(0, samples.size, 4096):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, start:start + 4096], dtype=np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, start, fractions.Fraction(1, RATE)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return np.concatenate(out).astype(np.float32)


def _speed(clip: np.ndarray, factor: float) -> np.ndarray:
    """Played ``factor`` times as fast, pitch and tempo together (a resampling)."""
    return np.interp(np.arange(0, clip.size - 1, factor), np.arange(clip.size), clip).astype(np.float32)


def _decode(path: Path) -> np.ndarray:
    return np.concatenate(list(media.iter_audio(path, RATE))).astype(np.float32) / 32768


def edit(clip: np.ndarray, name: str, rng: np.random.Generator, scratch: Path) -> np.ndarray:
    """``clip`` after the edit ``name`` (a key of :data:`EDITS`)."""
    if name == "reencode":  # through a 32-kbps MP3 (the video's AAC follows)
        mp3 = write_media(scratch / "reencode.mp3", clip.size / RATE, video=False, audio=clip, rate=RATE,
                          audio_codec="libmp3lame", audio_bit_rate=32000)
        return _decode(mp3)
    if name == "gain":
        return clip * np.float32(10 ** (-12 / 20))
    factor = float(name[5:]) if name[:5] in ("tempo", "speed", "pitch") else 1.0
    if name.startswith("tempo"):
        return atempo(clip, factor)
    if name.startswith("speed"):
        return _speed(clip, factor)
    if name.startswith("pitch"):  # the speed change's pitch, its tempo undone
        return atempo(_speed(clip, factor), 1 / factor)
    if name == "noise0dB":
        sound = clip[np.abs(clip) > 1e-3]
        return clip + pink(rng, clip.size) * np.float32(np.sqrt(np.mean(sound ** 2)))
    raise ValueError(f"unknown edit {name!r}")


def generate(folder: Path) -> tuple[Path, dict[str, int | None]]:
    """Write the set under ``folder``: ``bench/`` (ESC-50-like WAVs) and ``inputs/`` (videos).

    Returns:
        (the benchmark folder, ``{video stem: index of the clip it holds, or None}``)
    """
    bench, inputs = folder / "bench", folder / "inputs"
    bench.mkdir(parents=True)
    inputs.mkdir()
    rng = np.random.default_rng(0)
    truth: dict[str, int | None] = {}
    for k, text in enumerate(CLIPS):
        clip = said(text, folder, f"b{k}")[: 5 * RATE]
        write_media(bench / f"1-{k}-A-0.wav", 5.0, video=False, audio=clip, rate=RATE, audio_codec="pcm_s16le")
        for name in EDITS:
            sound = edit(clip, name, rng, folder)
            video = pink(rng, 10 * RATE) * np.float32(10 ** (-50 / 20))  # a quiet bed under the whole video
            video[3 * RATE: 3 * RATE + sound.size] += 0.5 * sound[: 7 * RATE]
            write_media(inputs / f"{name}_{k}.mp4", 10.0, audio=video, rate=RATE, size=(32, 32), fps=5)
            truth[f"{name}_{k}"] = k
    for name, audio in negatives(rng, [said(text, folder, f"o{k}") for k, text in enumerate(OTHER)]).items():
        write_media(inputs / f"negative_{name}.mp4", audio.size / RATE, audio=audio, rate=RATE, size=(32, 32), fps=5)
        truth[f"negative_{name}"] = None
    return bench, truth


def detection_table(folder: Path) -> dict:
    """Votes of every video of the set for its best benchmark clip, and recall and false matches
    per threshold (a copy matched to the wrong clip counts as a false match and a miss)."""
    bench, truth = generate(folder)
    index = landmarks.BenchmarkIndex([landmarks.peaks(_decode(bench / f"1-{k}-A-0.wav")) for k in range(len(CLIPS))])
    votes, wrong = {}, {}
    for stem, clip in truth.items():
        hit = index.best(landmarks.peaks(_decode(folder / "inputs" / f"{stem}.mp4")))
        right = hit is not None and hit.clip == clip
        votes[stem] = hit.votes if right else 0
        wrong[stem] = 0 if right or hit is None else hit.votes
    rows = []
    for threshold in THRESHOLDS:
        recall = {name: float(np.mean([votes[f"{name}_{k}"] >= threshold for k in range(len(CLIPS))]))
                  for name in EDITS}
        rows.append({"min_votes": threshold, "recall": recall,
                     "false_matches": sum(v >= threshold for v in wrong.values())})
    return {"votes": votes, "false_votes": wrong, "rows": rows}


#: The edits as the table heads them.
EDIT_NAMES = {"reencode": "re-encode", "gain": "gain", "tempo0.9": "tempo 0.9", "tempo1.1": "tempo 1.1",
              "speed0.9": "speed 0.9", "speed1.1": "speed 1.1", "pitch0.9": "pitch 0.9", "pitch1.1": "pitch 1.1",
              "noise0dB": "noise 0 dB"}


def markdown(report: dict) -> str:
    """Recall per edit, false matches, and recall and precision over every copy, per ``min_votes``, as
    a Markdown table (a copy matched to the wrong clip is a false match and a miss), then the smallest
    votes of a caught copy per edit and the largest chance votes (docs/data.md's block)."""
    lines = ["| min_votes | " + " | ".join(EDIT_NAMES[e] for e in EDITS) + " | false matches | recall | precision |",
             "|" + "---|" * (len(EDITS) + 4)]
    for r in report["rows"]:
        caught = sum(r["recall"][e] * len(CLIPS) for e in EDITS)
        precision = caught / (caught + r["false_matches"]) if caught + r["false_matches"] else 1.0
        lines.append(f"| {r['min_votes']} | " + " | ".join(f"{r['recall'][e]:.1f}" for e in EDITS)
                     + f" | {r['false_matches']} | {caught / (len(CLIPS) * len(EDITS)):.3f} | {precision:.3f} |")
    smallest = ", ".join(f"{EDIT_NAMES[e]} {min(report['votes'][f'{e}_{k}'] for k in range(len(CLIPS)))}"
                         for e in EDITS)
    lines += ["", f"Smallest votes of a caught copy: {smallest}; largest chance votes: "
                  f"{max(report['false_votes'].values())}."]
    return "\n".join(lines)


def main(output: str | Path = "bench") -> dict:
    """Generate the set in a temporary folder, write ``leakage.{json,md}`` under ``output``."""
    with tempfile.TemporaryDirectory(prefix="mmvideos-leakage-") as tmp:
        report = detection_table(Path(tmp))
    save(report, markdown(report), output, "leakage")
    return report
