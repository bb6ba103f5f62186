"""Clear errors: a tar-slip shard names itself, a full disk says it is full."""

from __future__ import annotations

import errno
import io
import tarfile

import pytest
from media_fixtures import tone, write_media

from mmvideos.data import shards
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages.clip import ClipConfig, clip_videos, iter_shard_audio
from mmvideos.stages.ingest import ingest, read_videos


@pytest.mark.parametrize("name", ["../evil.wav", "clips/a.wav", "/etc/cron.d/x.wav", "noext"])
def test_a_shard_with_a_path_member_is_an_error_naming_the_shard(tmp_path, name):
    """Before: a tar-slip member (``../evil.wav``) gave ``KeyError: 'wav'``."""
    path = tmp_path / "audio.tar"
    wav = shards.wav_bytes(__import__("numpy").zeros(160, "int16"), 16000)
    with tarfile.open(path, "w") as tar:
        for member in ("clip-000.wav", name):
            info = tarfile.TarInfo(member)
            info.size = len(wav)
            tar.addfile(info, io.BytesIO(wav))
    with pytest.raises(ValueError, match=rf"shard {path} is damaged \(member .* is not <clip id>.<suffix>"):
        list(iter_shard_audio(str(path)))


def test_a_full_disk_says_so(tmp_path, monkeypatch):
    """Before: ENOSPC while writing a unit said the files 'could not be read now ... once storage answers'."""
    source = tmp_path / "src"
    source.mkdir()
    write_media(source / "a.mp4", 4.0, audio=tone(4.0))
    data = DataRoot(tmp_path / "data")
    ingest(source, tmp_path / "ingest", data, progress=False)

    def full(self, key, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.ShardWriter, "write", full)
    with pytest.raises(OSError, match="clip: no space left on device .* free space in .* then run again") as caught:
        clip_videos(read_videos(tmp_path / "ingest"), tmp_path / "clips", ClipConfig(), data, progress=False)
    assert caught.value.errno == errno.ENOSPC
    assert not list((tmp_path / "data" / "clip").rglob("COMMIT.json"))
