"""Hostile image sources: paths outside raw_dir, slow/oversized/redirecting servers, pixel bombs.

Every network case talks only to a server on 127.0.0.1; "private address refused" is shown by a
redirect to 10.255.255.1 that must be refused before any connection is attempted.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmrec.data.amazon import FORMATS, read_amazon_meta
from mmrec.data.images import ImageRefused, decode_rgb, download_images, safe_name
from mmrec.data.report import IngestReport
from mmrec.features.encoders import EncodedBatch, ImageEncoder

LOOPBACK_ONLY = ["127.0.0.1/32"]  # the test server; every other private address stays refused


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    sent: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/trickle.jpg":  # headers at once, then one byte every 50 ms (5 s in all)
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif self.path == "/endless.jpg":  # no Content-Length, 32 MB unless the client hangs up
            self.send_response(200)
            self.end_headers()
            block = b"z" * 65536
            sent = 0
            try:
                while sent < 32 << 20:
                    self.wfile.write(block)
                    sent += len(block)
            finally:
                type(self).sent[self.path] = sent
        elif self.path == "/to-private.jpg":
            self.send_response(302)
            self.send_header("Location", "http://10.255.255.1/x.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "http://images.example/p.png":  # asked as a forward proxy
            body = _png((8, 8))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/bomb.png":  # a few KB on the wire, 100 MP once decoded
            body = _png((10_000, 10_000), "1")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients hanging up is the point
        pass


@pytest.fixture()
def server():
    _Handler.sent = {}
    srv = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch) -> None:
    """Talk to the test server directly, whatever proxy the machine running the tests has."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def connections(monkeypatch) -> list[tuple[str, int]]:
    """Every address the downloader connects to (the real connect still happens)."""
    seen: list[tuple[str, int]] = []
    real = socket.create_connection

    def spy(address, *args, **kwargs):
        seen.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    return seen


KW = dict(workers=2, timeout_s=2.0, retries=0, backoff_s=0.0, progress=False)


def test_image_refs_outside_raw_dir_are_counted_skips(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "imgs").mkdir(parents=True)
    (raw / "images").mkdir()
    secret = tmp_path / "secret.jpg"  # outside raw_dir
    secret.write_bytes(_png((8, 8)))
    (raw / "imgs" / "ok.png").write_bytes(_png((8, 8)))
    (raw / "imgs" / "link.png").symlink_to(secret)
    (raw / "images" / safe_name("S")).symlink_to(secret)  # a shipped "image" that escapes
    refs = {"A": "imgs/ok.png", "B": "../secret.jpg", "C": str(secret), "D": "file:///etc/passwd",
            "E": "imgs/link.png", "S": None}
    lines = [json.dumps({"asin": k, "title": f"t{k}", **({"imageURL": [v]} if v else {})})
             for k, v in refs.items()]
    meta = raw / "meta_Toys.json"
    meta.write_text("\n".join(lines) + "\n")
    report = IngestReport()
    items = read_amazon_meta(FORMATS["amazon2018"], meta, raw, "raw", ["title"], 100, report)
    paths = dict(zip(items["item_id"], items["image_path"]))
    assert paths == {"A": "raw/imgs/ok.png", "B": None, "C": None, "D": None, "E": None, "S": None}
    assert items["image_url"].null_count() == items.height  # nothing local is ever downloaded
    rep = report.files[str(meta)]
    assert dict(rep.repaired) == {"image_source_refused:outside_raw_dir": 3,
                                  "image_source_refused:absolute_path": 1,
                                  "image_source_refused:scheme": 1}
    assert [(e["line"], e["reason"]) for e in rep.examples] == [
        (2, "image_source_refused:outside_raw_dir"), (3, "image_source_refused:absolute_path"),
        (4, "image_source_refused:scheme"), (5, "image_source_refused:outside_raw_dir"),
        (6, "image_source_refused:outside_raw_dir")]


def test_trickling_server_hits_the_total_deadline(tmp_path: Path, server: str) -> None:
    # Each byte arrives well within timeout_s, so only a total deadline can stop this download;
    # without it the 100-byte body would be read in full and fail as not_an_image.
    rep = download_images([("t", f"{server}/trickle.jpg")], tmp_path, deadline_s=0.5,
                          allow_networks=LOOPBACK_ONLY, **KW)
    assert rep.failed == {"timeout": 1}
    assert "deadline" in rep.examples[0]["detail"]
    assert not (tmp_path / safe_name("t")).exists()


def test_oversized_body_is_cut_while_streaming(tmp_path: Path, server: str) -> None:
    rep = download_images([("e", f"{server}/endless.jpg")], tmp_path, max_bytes=100_000,
                          allow_networks=LOOPBACK_ONLY, **KW)
    assert rep.failed == {"too_large": 1}
    deadline = time.monotonic() + 10  # the handler notices the hang-up on its next write
    while "/endless.jpg" not in _Handler.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _Handler.sent["/endless.jpg"] < 32 << 20  # the client hung up early


def test_private_addresses_refused_before_connecting(tmp_path: Path, server: str,
                                                     connections: list) -> None:
    port = int(server.rsplit(":", 1)[1])
    jobs = [("r", f"{server}/to-private.jpg"),  # loopback allowed by CIDR, redirect re-checked
            ("m", "http://169.254.169.254/latest/meta-data/x.jpg")]  # link-local: cloud metadata
    rep = download_images(jobs, tmp_path, allow_networks=LOOPBACK_ONLY, **KW)
    assert rep.failed == {"private_address": 2}
    assert connections == [("127.0.0.1", port)]  # 10.255.255.1 and 169.254.169.254 never dialled
    # Without the allowance even the loopback server itself is refused, unconnected.
    connections.clear()
    rep = download_images([("l", f"{server}/to-private.jpg")], tmp_path / "b", **KW)
    assert rep.failed == {"private_address": 1} and connections == []
    assert "data.images.allow_private" in rep.examples[0]["detail"]


def test_proxy_from_the_environment_is_honoured(tmp_path: Path, server: str, connections: list,
                                               monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", server)  # the test server doubles as a forward proxy
    monkeypatch.setenv("no_proxy", "")
    rep = download_images([("p", "http://images.example/p.png"), ("x", "http://10.1.2.3/x.png")],
                          tmp_path, **KW)
    assert rep.downloaded == 1 and (tmp_path / safe_name("p")).is_file()
    assert rep.failed == {"private_address": 1}  # an address literal is still checked
    assert connections == [("127.0.0.1", int(server.rsplit(":", 1)[1]))]  # only the proxy


def test_pixel_bombs_refused_from_the_header(tmp_path: Path, server: str) -> None:
    rep = download_images([("b", f"{server}/bomb.png")], tmp_path, max_pixels=1_000_000,
                          allow_networks=LOOPBACK_ONLY, **KW)
    assert rep.failed == {"too_many_pixels": 1}
    assert "100000000 pixels" in rep.examples[0]["detail"]  # PIL's guard, set from the cap
    assert "data.images.max_pixels=1,000,000" in rep.examples[0]["detail"]
    strip = tmp_path / "strip.png"
    strip.write_bytes(_png((5000, 1)))  # tiny file; resizing its short side to 256 costs GBs
    with pytest.raises(ImageRefused, match="aspect ratio"):
        decode_rgb(strip)


class _Identity(ImageEncoder):
    """The real ImageEncoder.load_item with an identity transform (no weights needed)."""

    name, dim, n_tokens, input_size = "identity", 3, 0, (8, 8)
    transform = staticmethod(lambda img: torch.from_numpy(__import__("numpy").asarray(img).copy()))

    def encode(self, batch):  # pragma: no cover - not used
        return EncodedBatch(batch)

    def metadata(self):  # pragma: no cover - not used
        return {}


def test_extraction_loader_applies_the_pixel_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(_png((1200, 1200), "1"))  # over the cap, under PIL's 2x guard
    enc = _Identity()
    enc.max_pixels = 1_000_000
    with pytest.raises(ImageRefused, match="1,440,000 pixels exceeds data.images.max_pixels=1,000,000"):
        enc.load_item(str(big))
    enc.max_pixels = 10_000_000
    assert tuple(enc.load_item(str(big)).shape) == (1200, 1200, 3)
