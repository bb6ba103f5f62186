"""The training loader's reader: a minimal tar reader that finds each clip's array, and reads
of single seconds from local and ``gs://`` shards."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import upload_dir
from mmvideos.data import shards
from mmvideos.features.store import ShardFile, encode_mel, iter_features, npy_members
from mmvideos.training.data import TrainStream, training_sample, training_shards
from mmvideos.training.synthetic import write_synthetic_features


@pytest.fixture()
def shard(tmp_path):
    """A shard of three clips of different lengths, one with a name long enough for a PAX header."""
    rng = np.random.default_rng(0)
    clips = {"a": rng.standard_normal((3, 100, 64)), "b" * 120: rng.standard_normal((1, 100, 64)),
             "c": rng.standard_normal((5, 100, 64))}
    path = tmp_path / "features.tar"
    with shards.ShardWriter(path) as writer:
        for key, mel in clips.items():
            writer.write(key, encode_mel(mel))
    return path, {k: v.astype(np.float16) for k, v in clips.items()}


def _seconds(uri: str) -> dict[tuple[str, int], bytes]:
    out = {}
    with ShardFile(uri) as f:
        for key, offset, shape, dtype in npy_members(f):
            size = dtype.itemsize * shape[1] * shape[2]
            for second in range(shape[0]):
                buf = bytearray(size)
                f.read_into(memoryview(buf), offset + second * size)
                out[key, second] = bytes(buf)
    return out


def test_the_minimal_tar_reader_finds_every_array_as_numpy_and_tarfile_do(shard):
    path, clips = shard
    with ShardFile(str(path)) as f:
        members = list(npy_members(f))
    assert [m[0] for m in members] == [k for k, _ in shards.iter_shard(str(path))] == list(clips)
    assert all(shape == clips[key].shape and dtype == np.dtype("<f2") for key, _, shape, dtype in members)
    seconds = _seconds(str(path))
    assert seconds == {(k, s): clips[k][s].tobytes() for k in clips for s in range(len(clips[k]))}


def test_gcs_shards_read_the_same_seconds(shard, gcs_bucket):
    path, _ = shard
    upload_dir(path.parent, f"{gcs_bucket('loader')}/shards")
    assert _seconds("gs://loader/shards/features.tar") == _seconds(str(path))


def test_a_truncated_shard_is_a_clear_error(shard, tmp_path):
    path, _ = shard
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[:2000])  # inside the first clip's array
    with pytest.raises(ValueError, match="truncated"):
        _seconds(str(cut))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"x" * 1024)
    with ShardFile(str(bad)) as f, pytest.raises(ValueError, match="not a tar header"):
        list(npy_members(f))


def test_the_stream_reads_gcs_shards_like_local_ones(tmp_path, gcs_bucket):
    folder = write_synthetic_features(tmp_path / "f", num_clips=20, val_clips=4, num_shards=2)
    upload_dir(folder / "shards", f"{gcs_bucket('loader')}/f/shards")
    uris, counts, meta = training_shards(folder)
    remote = [u.replace(str((folder / "shards").resolve()), "gs://loader/f/shards") for u in uris]
    samples = []
    for shard_uris in (uris, remote):
        stream = TrainStream(shard_uris, counts, meta, seed=4, shuffle_buffer=1)
        stream.set_epoch(1)
        samples.append([(m.tobytes(), labels.tolist()) for m, labels in stream])
    assert samples[0] == samples[1] and len(samples[0]) == 16
    expected = {training_sample(c, 4, 1)[0].tobytes() for c in iter_features(folder, split="train")}
    assert {m for m, _ in samples[0]} == expected
