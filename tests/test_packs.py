"""Training packs: the pack step (incremental, keyed by content) and the packed loader, which reads
the same samples as the per-unit reader, checks every second it reads, and opens O(packs) objects."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from mmvideos.data import integrity
from mmvideos.data.dataroot import MANIFEST, DataRoot
from mmvideos.features import packs
from mmvideos.features.packs import PACKS, PackSet, iter_packed
from mmvideos.features.store import INDEX, iter_features
from mmvideos.stages.pack import MB, PackConfig, pack_features
from mmvideos.training.data import TrainStream, training_packs, training_shards
from mmvideos.training.loop import pack_root
from mmvideos.training.synthetic import write_synthetic_features


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    """40 unit shards of 10 clips (2 to 4 s each, about 400 kB a unit)."""
    return write_synthetic_features(tmp_path_factory.mktemp("f") / "f", num_clips=400, val_clips=40, num_shards=40)


def _samples(stream: TrainStream, epoch: int) -> list[tuple[bytes, list[int]]]:
    stream.set_epoch(epoch)
    return sorted((m.tobytes(), labels.tolist()) for m, labels in stream)


def _pack(features: Path, out: Path, root: Path | str, mb: float = 1.6) -> dict:
    return pack_features(features, out, DataRoot(root), PackConfig(mb))


def test_the_packed_stream_reads_what_the_unit_reader_reads(features, tmp_path):
    summary = _pack(features, tmp_path / "p", tmp_path / "root")
    assert 4 <= summary["packs"] < 40 and summary["clips"] == 400 and summary["train_clips"] == 360
    unpacked = TrainStream(*training_shards(features), seed=3, shuffle_buffer=1)
    for epoch in (0, 2):
        expected = _samples(unpacked, epoch)
        assert _samples(TrainStream(*training_packs(tmp_path / "p"), seed=3, shuffle_buffer=8), epoch) == expected
        ranks = [_samples(TrainStream(*training_packs(tmp_path / "p"), seed=3, shuffle_buffer=4, rank=r, world_size=2),
                          epoch) for r in range(2)]
        assert sorted(ranks[0] + ranks[1]) == expected  # disjoint clips over the ranks, all of them
    val = {r.clip_id: (r.mel.tobytes(), r.visual.tolist(), r.audio.tolist())
           for r in iter_packed(PackSet.read(tmp_path / "p"), split="val")}
    assert val == {r.clip_id: (r.mel.tobytes(), r.visual.tolist(), r.audio.tolist())
                   for r in iter_features(features, split="val")}
    assert len(list(iter_packed(PackSet.read(tmp_path / "p"), split="val", limit=5))) == 5


def test_packs_are_reused_and_a_grown_feature_set_repacks_few(features, tmp_path):
    # the feature set before 10 more videos arrived: the first 30 units' rows of the index and manifest
    older = tmp_path / "older"
    shutil.copytree(features, older)
    index, manifest = pd.read_parquet(features / INDEX), pd.read_parquet(features / MANIFEST)
    kept = sorted(manifest["uri"])[:30]
    index[index["shard"].isin(kept)].to_parquet(older / INDEX, index=False)
    manifest[manifest["uri"].isin(kept)].to_parquet(older / MANIFEST, index=False)
    before = _pack(older, tmp_path / "p0", tmp_path / "root")
    again = _pack(older, tmp_path / "p0", tmp_path / "root")
    assert again["shards_reused"] == before["packs"] and again["shards_computed"] == 0  # written once
    grown = _pack(features, tmp_path / "p1", tmp_path / "root")
    assert grown["shards_reused"] >= before["packs"] - 1  # only the last pack's boundary moves
    old_keys = set(pd.read_parquet(tmp_path / "p0" / PACKS)["key"])
    assert len(set(pd.read_parquet(tmp_path / "p1" / PACKS)["key"]) - old_keys) == grown["shards_computed"]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_damaged_pack_is_an_error_naming_it_and_its_stage(features, tmp_path):
    _pack(features, tmp_path / "p", tmp_path / "root")
    table = pd.read_parquet(tmp_path / "p" / PACKS)
    first = table.iloc[0]
    members = PackSet.read(tmp_path / "p").members(0, packs.RangeReader(first["uri"]))
    _flip(Path(first["uri"]), int(members["offset"].iloc[0]) + 5)  # in the first clip's first second
    second = table.iloc[1]
    with pytest.raises(ValueError, match=rf"pack {first['uri']} is corrupt: second 0 of clip .* pack step"):
        list(iter_packed(PackSet.read(tmp_path / "p")))
    _flip(Path(first["uri"]), int(members["offset"].iloc[0]) + 5)  # restored
    _flip(Path(second["uri"]), int(second["members_offset"]) + 100)
    with pytest.raises(ValueError, match=rf"pack {second['uri']} is corrupt: its member table"):
        list(TrainStream(*training_packs(tmp_path / "p"), seed=0, shuffle_buffer=1))


def test_an_epoch_opens_one_object_per_pack_and_packs_scale_with_bytes(features, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(packs.RangeReader, "__init__", lambda self, uri, _init=packs.RangeReader.__init__: (
        opened.append(uri), _init(self, uri))[1])
    counts = {}
    for mb in (0.8, 1.6, 3.2):
        summary = _pack(features, tmp_path / str(mb), tmp_path / "root", mb)
        opened.clear()
        _samples(TrainStream(*training_packs(tmp_path / str(mb)), seed=0, shuffle_buffer=1), 1)
        assert len(opened) == len(set(opened)) == summary["packs"]  # each pack once per epoch
        counts[mb] = summary["packs"]
        total = summary["bytes"]
    # content-defined cuts: about one pack per pack_mb, never more than one per unit
    assert counts[0.8] > counts[1.6] > counts[3.2] >= 1
    assert all(n <= 2.5 * total / (mb * MB) + 1 for mb, n in counts.items()), counts
    # at 10^6 clips of the paper's 10 s (12,800 bytes a second) with the default 512 MB packs, that is
    per_clip = 10 * 12_800 + 1024  # a tar header and a .npy header per clip
    assert 2.5 * 1_000_000 * per_clip / (PackConfig().pack_mb * MB) + 1 < 700


def test_packs_on_gcs_read_the_same_samples_with_ranged_reads(features, tmp_path, gcs_bucket):
    local = _pack(features, tmp_path / "local", tmp_path / "root")
    remote = _pack(features, tmp_path / "remote", f"{gcs_bucket('packs')}/root")
    assert remote["packs"] == local["packs"]
    assert all(u.startswith("gs://packs/root/pack/") for u in pd.read_parquet(tmp_path / "remote" / PACKS)["uri"])
    stream = TrainStream(*training_packs(tmp_path / "remote"), seed=5, shuffle_buffer=1)
    assert _samples(stream, 0) == _samples(TrainStream(*training_packs(tmp_path / "local"), seed=5, shuffle_buffer=1), 0)


def test_a_unit_that_is_not_what_its_manifest_says_is_not_packed(features, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(features, damaged)
    index = pd.read_parquet(damaged / INDEX)
    manifest = pd.read_parquet(damaged / MANIFEST)
    shard = Path(manifest["uri"].iloc[3].replace(str(features), str(damaged)))
    manifest["uri"] = [u.replace(str(features), str(damaged)) for u in manifest["uri"]]
    index["shard"] = [u.replace(str(features), str(damaged)) for u in index["shard"]]
    manifest.to_parquet(damaged / MANIFEST, index=False)
    index.to_parquet(damaged / INDEX, index=False)
    _flip(shard, 3000)
    with pytest.raises(ValueError, match=rf"shard {shard} is corrupt: .* features stage"):
        _pack(damaged, tmp_path / "p", tmp_path / "root")
    assert not (tmp_path / "p" / PACKS).exists()


def test_packs_go_to_the_data_root_of_the_checkpoint(tmp_path):
    key = "ab" + "0" * 62
    assert pack_root(f"gs://b/root/pretrain/ab/{key}/checkpoint.pt", tmp_path).uri == "gs://b/root"
    assert Path(pack_root(None, tmp_path).uri) == tmp_path / "packs" / "root"
    assert Path(pack_root("elsewhere/checkpoint.pt", tmp_path).uri) == tmp_path / "packs" / "root"


def test_a_resumed_pretraining_reads_no_feature_unit_again(tmp_path):
    """Start-up from the recorded hashes: on resume the packs are found by key, no unit is fetched or
    hashed (a unit damaged since goes unread), and training reads the packs, checked as it goes."""
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.training.config import PretrainConfig
    from mmvideos.training.loop import checkpoint_uri, pretrain

    features = write_synthetic_features(tmp_path / "features", num_clips=64, val_clips=16, num_shards=4)
    cfg = PretrainConfig(model="vggish_fc", width_mult=0.0625, epochs=1, batch_size=16, shuffle_buffer=32,
                         num_workers=0, device="cpu", val_clips=0, pack_mb=0.1)
    root = DataRoot(tmp_path / "root")
    resume = checkpoint_uri(root, features, cfg)
    first = pretrain(features, tmp_path / "out", cfg, progress=False, resume_from=resume)
    written = sorted((tmp_path / "root" / "pack").rglob(packs.PACK))
    assert first["train_clips"] == 48 and len(written) >= 2 and not (tmp_path / "out" / "packs").exists()
    for unit in pd.read_parquet(features / MANIFEST)["uri"]:
        _flip(Path(unit), 2000)  # every feature unit damaged after packing
    second = pretrain(features, tmp_path / "out", PretrainConfig(**{**cfg.__dict__, "epochs": 2}), progress=False,
                      resume_from=checkpoint_uri(root, features, cfg))
    assert second["final"]["epoch"] == 2
    with tarfile.open(written[0]) as tar:  # a pack is a plain tar: its member table is its last member
        table = tar.getmember(f"{packs.MEMBERS}.parquet")
    _flip(written[0], table.offset_data + table.size // 2)  # a damaged pack is found as it is read
    integrity._VERIFIED.clear()  # as a fresh process would start: reuse hashes no pack, the loader finds it
    with pytest.raises(ValueError, match="is corrupt"):
        pretrain(features, tmp_path / "out", PretrainConfig(**{**cfg.__dict__, "epochs": 3}), progress=False,
                 resume_from=checkpoint_uri(root, features, cfg))


def test_reusing_packs_reads_none_of_their_bytes(features, tmp_path):
    """Start-up cost: a reused pack is checked by its commit and sizes, not hashed whole (on a local
    root that was a read of every pack by rank 0 at each start); its bytes are checked as the
    loader reads them. So a pack damaged in place is reused here, unread, and nothing quarantined."""
    first = _pack(features, tmp_path / "p", tmp_path / "root")
    written = sorted((tmp_path / "root" / "pack").rglob(packs.PACK))
    _flip(written[0], 600)
    integrity._VERIFIED.clear()  # a fresh process: nothing verified yet
    again = _pack(features, tmp_path / "q", tmp_path / "root")
    assert again["shards_reused"] == first["packs"] == len(written) and again["shards_computed"] == 0
    assert not (tmp_path / "root" / "quarantine").exists()
    truncated = written[0].read_bytes()[:-1]
    written[0].write_bytes(truncated)  # a size that differs from the commit's is still caught, and repacked
    assert _pack(features, tmp_path / "r", tmp_path / "root")["shards_computed"] == 1
