"""MMVIDEOS_STORAGE_DEADLINE_S bounds the whole wait on a dead backend, and a truncated read
without hash headers is retried, never taken as the object (one retry policy for every call)."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from mmvideos.data import shards, storage
from mmvideos.data.storage import retry

DEADLINE_S = 3.0


@pytest.fixture(autouse=True)
def _fresh_outage(monkeypatch):
    monkeypatch.setenv("MMVIDEOS_STORAGE_DEADLINE_S", str(DEADLINE_S))
    retry._Outage.since = None
    yield
    retry._Outage.since = None


@pytest.fixture
def dead_endpoint(monkeypatch):
    """A server that accepts connections and never answers (a hung backend, a black-holed route)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("call", [
    lambda: storage.read_bytes("gs://dead/COMMIT.json"),
    lambda: storage.local_copy("gs://dead/video.mp4").__enter__(),
    lambda: list(shards.iter_shard("gs://dead/audio.tar")),
    lambda: storage.put_bytes(b"x", "gs://dead/x"),
    lambda: storage.list_files("gs://dead/clip"),
], ids=["read", "download", "shard stream", "write", "list"])
def test_a_dead_backend_costs_the_deadline(dead_endpoint, call):
    """Before: 60 s read timeouts per try (plus the library's own 120 s retry for shard
    streaming): 134-135 s with a 10 s deadline."""
    started = time.monotonic()
    with pytest.raises(storage.StorageUnavailable, match="run again|MMVIDEOS_STORAGE_DEADLINE_S"):
        call()
    assert time.monotonic() - started < DEADLINE_S + 2.5


class FaultProxy:
    """An HTTP proxy before the GCS emulator that cuts the body of the next ``truncate`` object
    downloads in half, sending no hash headers and a Content-Length that matches the cut body
    (so nothing but the object's size can tell)."""

    def __init__(self, upstream: str) -> None:
        self.truncate = 0
        upstream = upstream.rstrip("/")
        target = urlsplit(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                cut = "alt=media" in self.path and self.command == "GET" and proxy.truncate > 0 and len(data) > 1
                if cut:
                    proxy.truncate -= 1
                    data = data[: len(data) // 2]
                elif "alt=media" not in self.path:  # metadata names the emulator in its media links
                    data = data.replace(upstream.encode(), proxy.url.encode())
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() in ("content-length", "transfer-encoding", "connection"):
                        continue
                    if cut and key.lower() in ("x-goog-hash", "x-goog-stored-content-length", "content-range"):
                        continue
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def proxy(gcs_bucket, monkeypatch):
    import os

    bucket = gcs_bucket("faults")
    fault = FaultProxy(os.environ["STORAGE_EMULATOR_HOST"])
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fault.url)
    yield fault, bucket
    fault.server.shutdown()


def test_a_truncated_read_without_hash_headers_is_retried(proxy, tmp_path):
    """Before: a body cut short without hash headers was taken as the whole object."""
    fault, bucket = proxy
    payload = bytes(range(256)) * 4096  # 1 MiB
    storage.put_bytes(payload, f"{bucket}/blob.bin")
    with shards.ShardWriter(tmp_path / "audio.tar") as writer:
        for i in range(20):
            writer.write(f"clip{i:02d}", {"wav": shards.wav_bytes(__import__("numpy").full(8000, i, "int16"), 16000)})
    storage.put_file(tmp_path / "audio.tar", f"{bucket}/audio.tar")
    fault.truncate = 1
    assert storage.read_bytes(f"{bucket}/blob.bin") == payload
    fault.truncate = 1
    with storage.local_copy(f"{bucket}/blob.bin") as path:
        assert path.read_bytes() == payload
    fault.truncate = 1
    streamed = list(shards.iter_shard(f"{bucket}/audio.tar", storage_sha(tmp_path / "audio.tar")))
    assert [k for k, _ in streamed] == [f"clip{i:02d}" for i in range(20)] and fault.truncate == 0
    fault.truncate = 10**6  # never whole: an error, never a short file
    with pytest.raises(storage.StorageUnavailable, match="ShortRead: .*read 524288 bytes of gs://faults/blob.bin"):
        storage.read_bytes(f"{bucket}/blob.bin")


def storage_sha(path) -> str:
    from mmvideos.data.files import sha256_file

    return sha256_file(path)
