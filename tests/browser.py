"""Pages in a real browser: Debian's chromium, headless and offline, each page inside a sandboxed
iframe as the Kubeflow UI shows an HTML artifact (``make system-deps`` installs chromium).

The outer page carries a Content-Security-Policy that lets the framed page use only what it holds
(``data:`` images, sound and fonts, inline styles); chromium logs every blocked load, so a page
that needs anything outside itself (a CDN's script, an image beside it) is caught.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; font-src data:"
_BLOCKED = re.compile(r'CONSOLE.*"(.*Content Security Policy.*)"')


def chromium() -> str:
    """The chromium executable; the test fails (not skips) without it: `make system-deps`."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: run `make system-deps` (Debian: apt-get install chromium)"
    return found


def framed(page: Path, target: Path, width: int = 1200, height: int = 1600) -> Path:
    """``target``: an outer page holding ``page`` in a sandboxed ``srcdoc`` iframe under :data:`CSP`."""
    inner = html.escape(page.read_text(), quote=True)
    target.write_text(f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
                      f"content=\"{CSP}\"></head><body style='margin:0'><iframe sandbox='allow-scripts' "
                      f"style='border:0' width='{width}' height='{height}' srcdoc=\"{inner}\"></iframe></body></html>")
    return target


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1600) -> list[str]:
    """Render ``page`` framed, offline, into ``png``; returns the loads the policy blocked."""
    outer = framed(page, png.with_suffix(".framed.html"), width, height)
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                           f"--window-size={width},{height}", f"--screenshot={png}", outer.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr[-2000:]
    return [m.group(1) for m in _BLOCKED.finditer(done.stderr)]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.resources: list[str] = []  # what the page loads: must be inside it
        self.links: list[str] = []  # where it navigates to

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for name, value in attrs:
            if name in ("src", "poster", "data") or (name == "href" and tag == "link"):
                self.resources.append(value or "")
            elif name == "href":
                self.links.append(value or "")


def outside_references(page: Path) -> tuple[list[str], list[str]]:
    """``(resources not inlined as data: URIs, links that leave the page's folder or lead nowhere)``."""
    parser = _Links()
    text = page.read_text()
    parser.feed(text)
    resources = [r for r in parser.resources if not r.startswith("data:")]
    resources += [u for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", text) if not u.startswith("data:")]
    links = [link for link in parser.links
             if not link.startswith("#") and not (link.endswith(".html") and "://" not in link
                                                   and (page.parent / link).resolve().is_file())]
    return resources, links
