"""A JSON API on 127.0.0.1, served from a thread while a ``with`` block runs.

The base of the tests' API stand-ins (``kfp_api.KfpApi``, ``k8s_api.KubeApi``): a subclass
answers :meth:`LoopbackApi.answer` and keeps its own state; this class does the HTTP.
"""

from __future__ import annotations

import abc
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class LoopbackApi(abc.ABC):
    """The server; ``url`` is its endpoint. A ``str`` answer is sent as text, anything else as JSON."""

    def __init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code, reply = api.answer(method, url.path, query, body, self.headers)
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(reply, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @abc.abstractmethod
    def answer(self, method: str, path: str, query: dict, body: bytes, headers) -> tuple[int, object]:
        """The status and body of the reply to one request (``query``: first value per name)."""

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
