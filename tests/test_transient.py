"""An I/O error is never a reject: media.py, ingest and clip tell "cannot be read now" from
"content FFmpeg refuses" (docs/data.md, "Transient or permanent")."""

from __future__ import annotations

import errno
import io
import shutil

import numpy as np
import pandas as pd
import pytest
from media_fixtures import tone, write_media

from mmvideos.data import media, storage
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages import clip as clip_stage
from mmvideos.stages.clip import ClipConfig, clip_videos
from mmvideos.stages.ingest import ingest, read_videos


class FlakyFile(io.RawIOBase):
    """A local file whose ``fail_at``-th read raises EIO, as NFS, a FUSE-mounted bucket or a
    flaky disk do; every other read gives the file's bytes."""

    def __init__(self, path, fail_at: int):
        self._fh, self.fail_at, self.reads = open(path, "rb"), fail_at, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._fh.seek(offset, whence)

    def tell(self):
        return self._fh.tell()

    def readinto(self, buf):
        self.reads += 1
        if self.reads == self.fail_at:
            raise OSError(errno.EIO, "Input/output error")
        data = self._fh.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self):
        self._fh.close()
        super().close()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("flaky") / "tone.mp4"
    write_media(path, 7.0, audio=tone(7.0))
    return path


def test_an_eio_from_the_os_is_not_a_reject():
    """FFmpeg's own read of a path failing with EIO (``/proc/self/mem`` at offset 0 is unmapped:
    a real EIO from the kernel). Before the fix this was MediaError("not a readable media file
    (Input/output error)"), a committed reject."""
    with pytest.raises(media.MediaUnreadable) as caught:
        media.probe("/proc/self/mem")
    assert caught.value.errno == errno.EIO
    assert not isinstance(caught.value, media.MediaError)


@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_an_eio_on_any_read_is_cannot_be_read_now(video, where):
    """Whichever read fails (the first, a middle one, the last), probe, audio and frames raise
    MediaUnreadable (an OSError carrying the errno), never MediaError; a later read of the same
    file gives the full result."""
    calls = [lambda f: media.probe(f),
             lambda f: list(media.iter_audio(f, 16000)),
             lambda f: list(media.iter_frames(f, [0.5, 3.5, 6.5], 32))]
    for call in calls:
        counted = FlakyFile(video, 0)
        call(counted)
        flaky = FlakyFile(video, 1 + round(where * (counted.reads - 1)))
        with pytest.raises(media.MediaUnreadable) as caught:
            call(flaky)
        assert caught.value.errno == errno.EIO and flaky.reads >= flaky.fail_at
    assert media.probe(FlakyFile(video, 10**6)) == media.probe(video)
    whole = np.concatenate(list(media.iter_audio(FlakyFile(video, 10**6), 16000)))
    assert np.array_equal(whole, np.concatenate(list(media.iter_audio(video, 16000))))


def test_refused_content_is_still_a_reject(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(media.MediaError):
        media.probe(junk)
    with pytest.raises(media.MediaError):
        media.probe(io.BytesIO(junk.read_bytes()))


def _eio_on(monkeypatch, name: str, fail_at: int = 2):
    """Every media read of files called ``name`` fails at its ``fail_at``-th read (the layer media.py sees)."""
    opened = media._open

    def flaky(source):
        if str(source).endswith(name):
            return opened(FlakyFile(source, fail_at))
        return opened(source)

    monkeypatch.setattr(media, "_open", flaky)


def test_ingest_leaves_an_unreadable_file_for_the_next_run(video, tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(video, source / "a.mp4")
    write_media(source / "b.mp4", 4.0, audio=tone(4.0, hz=660.0))
    data = DataRoot(tmp_path / "data")
    _eio_on(monkeypatch, "b.mp4")
    with pytest.raises(storage.StorageUnavailable, match=r"1 of 2 files could not be read now.*b\.mp4"):
        ingest(source, tmp_path / "first", data, progress=False)
    monkeypatch.undo()
    summary = ingest(source, tmp_path / "second", data, progress=False)
    assert summary["videos_kept"] == 2 and summary["videos_rejected"] == 0
    assert summary["shards_reused"] == 1 and summary["shards_computed"] == 1  # a.mp4 kept from the first run


def test_ingest_of_a_truncated_read_is_not_judged(video, tmp_path):
    """A read shorter than the listed size (a truncated copy or download) is not probed: before the
    fix the cut file was committed as 'not a readable media file' or with a shorter duration."""
    from mmvideos.stages.ingest import list_source, probe_listing

    source = tmp_path / "src"
    source.mkdir()
    whole = video.read_bytes()
    (source / "a.mp4").write_bytes(whole)
    data = DataRoot(tmp_path / "data")
    fingerprint = list_source(source, data)
    (source / "a.mp4").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(storage.StorageUnavailable, match="read .* bytes but the listing says"):
        probe_listing(data, fingerprint, tmp_path / "part", progress=False)
    assert not list((tmp_path / "data").rglob("COMMIT.json"))
    (source / "a.mp4").write_bytes(whole)
    probe_listing(data, fingerprint, tmp_path / "part", progress=False)
    probes = pd.read_parquet(tmp_path / "part" / "probes.parquet")
    assert probes["reason"].tolist() == [""] and probes["duration_s"].iloc[0] == pytest.approx(7.0, abs=0.1)


def test_clip_leaves_a_video_unreadable_mid_decode_for_the_next_run(video, tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(video, source / "a.mp4")
    data = DataRoot(tmp_path / "data")
    ingest(source, tmp_path / "ingest", data, progress=False)
    videos = read_videos(tmp_path / "ingest")
    _eio_on(monkeypatch, "a.mp4", fail_at=5)
    with pytest.raises(storage.StorageUnavailable, match="could not be read now"):
        clip_videos(videos, tmp_path / "clips", ClipConfig(), data, progress=False)
    assert pd.read_parquet(tmp_path / "clips" / "rejects.parquet").empty
    assert not list((tmp_path / "data" / "clip").rglob("COMMIT.json"))
    monkeypatch.undo()
    summary = clip_videos(videos, tmp_path / "clips", ClipConfig(), data, progress=False)
    assert summary["clips"] == 2 and summary["videos_rejected"] == 0
    assert clip_stage.read_clips(tmp_path / "clips")["clip_id"].nunique() == 2
