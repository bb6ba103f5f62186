"""Shared fixtures: a folder of real, mixed good and bad media files, a GCS emulator, a tiny model export."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import yaml
from gcp_storage_emulator.server import create_server
from media_fixtures import speech, tone, write_media

from mmvideos.data import storage


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Good and bad inputs, each named for what it is.

    good_tone.mp4      7.0 s test pattern + 440 Hz tone            -> 2 clips of 3.5 s
    good_speech.mp4    4.0 s test pattern + espeak-ng speech       -> 1 clip of 4 s
    picture_only.mp4   5 s video without audio                     -> rejected
    sound_only.mp4     5 s AAC audio without video                 -> rejected
    too_short.mp4      2 s video + tone                            -> rejected
    corrupt.mp4        random bytes                                -> rejected
    empty.mp4          zero bytes                                  -> rejected
    copy_of_tone.mp4   byte copy of good_tone.mp4                  -> rejected as duplicate
    """
    root = tmp_path_factory.mktemp("media")
    voice, rate = speech("Hello, this is a test of the mmvideos pipeline.", root.parent / "voice.wav")
    write_media(root / "good_tone.mp4", 7.0, audio=tone(7.0))
    write_media(root / "good_speech.mp4", 4.0, audio=voice, rate=rate)
    write_media(root / "picture_only.mp4", 5.0)
    write_media(root / "sound_only.mp4", 5.0, video=False, audio=tone(5.0))
    write_media(root / "too_short.mp4", 2.0, audio=tone(2.0))
    (root / "corrupt.mp4").write_bytes(bytes(range(256)) * 64)
    (root / "empty.mp4").write_bytes(b"")
    (root / "copy_of_tone.mp4").write_bytes((root / "good_tone.mp4").read_bytes())
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: small models on a shared 2-core machine run faster and repeatably
    without threads spinning against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def upload_dir(local_dir: Path, dest_uri: str) -> None:
    """Copy a local folder under a ``gs://`` prefix."""
    bucket_name, key = storage.split_gcs(dest_uri.rstrip("/"))
    bucket = storage.gcs_client().bucket(bucket_name)
    for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
        bucket.blob(f"{key}/{path.relative_to(local_dir).as_posix()}").upload_from_filename(str(path))


@pytest.fixture(scope="session")
def gcs_bucket():
    """A real GCS-compatible server (gcp-storage-emulator) on loopback, shared by the session.

    google-cloud-storage is pointed at it through ``STORAGE_EMULATOR_HOST``; the fixture is a
    function that creates a bucket (once) and returns its ``gs://`` URI.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    env = pytest.MonkeyPatch()
    env.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    created: set[str] = set()

    def bucket(name: str) -> str:
        if name not in created:
            storage.gcs_client().create_bucket(name)
            created.add(name)
        return f"gs://{name}"

    try:
        yield bucket
    finally:
        env.undo()
        server.stop()


@pytest.fixture(scope="session")
def dvc_repo(media_dir, gcs_bucket, tmp_path_factory) -> Path:
    """A git repository with this project's DVC setup over the media fixtures (3 clips, small
    settings) after `dvc repro` and `dvc push` to the emulator: dvc.lock and results/ committed."""
    import shutil

    from repro_fixtures import dvc, git, make_repo

    base = tmp_path_factory.mktemp("dvc")
    source = shutil.copytree(media_dir, base / "videos")
    repo = make_repo(base / "repo", source, f"{gcs_bucket('dvc-remote')}/cache")
    dvc("repro", cwd=repo)
    dvc("push", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "demo run", cwd=repo)
    return repo


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    """A function pointing the kubernetes client, as ``config.load_kube_config()`` loads it (the
    kubeflow SDK, ``mmvideos doctor``), at a loopback API server's ``url`` (tests/k8s_api.py)."""
    from kubernetes.config import kube_config

    def point_at(url: str) -> None:
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "loopback",
            "clusters": [{"name": "loopback", "cluster": {"server": url}}],
            "users": [{"name": "mmvideos-pipeline", "user": {"token": "t"}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "mmvideos-pipeline",
                                                          "namespace": "kubeflow-user"}}]}))
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))

    return point_at


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny VGGish+BN export (width 1/8), as the pretrain stage writes it."""
    from mmvideos.models import build_model
    from mmvideos.training.checkpoint import export_model

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(7)
    export_model(folder, build_model("vggish_bn", 16, width_mult=0.125), "vggish_bn", 0.125, epoch=1)
    return folder
