import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from mmrec.data.images import download_images, safe_name


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buf, format="JPEG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, code, body, length=None):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        hits = type(self).hits
        hits[self.path] = hits.get(self.path, 0) + 1
        if self.path == "/ok.jpg":
            self._send(200, _jpeg())
        elif self.path == "/flaky.jpg":  # fails once, then works: retried
            self._send(503, b"busy") if hits[self.path] == 1 else self._send(200, _jpeg())
        elif self.path == "/slow.jpg":
            time.sleep(1.5)
            self._send(200, _jpeg())
        elif self.path == "/big.jpg":  # honest Content-Length over the cap
            self._send(200, b"x" * 5000)
        elif self.path == "/big-chunked.jpg":  # no Content-Length: cap enforced while reading
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"y" * 5000)
        elif self.path == "/text.jpg":
            self._send(200, b"<html>not an image</html>")
        else:
            self._send(404, b"nope")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # the client hung up on /slow: expected
        pass


@pytest.fixture()
def server():
    _Handler.hits = {}
    srv = _Server(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_downloader_cases_and_resume(tmp_path, server):
    jobs = [("ok", f"{server}/ok.jpg"), ("a/b:c?", f"{server}/ok.jpg"),
            ("flaky", f"{server}/flaky.jpg"), ("missing", f"{server}/missing.jpg"),
            ("slow", f"{server}/slow.jpg"), ("big", f"{server}/big.jpg"),
            ("big2", f"{server}/big-chunked.jpg"), ("text", f"{server}/text.jpg")]
    kw = dict(workers=4, timeout_s=0.4, retries=1, max_bytes=2000, backoff_s=0.01, progress=False,
              allow_private=True)  # the test server is on 127.0.0.1
    rep = download_images(jobs, tmp_path, **kw)
    assert rep.downloaded == 3 and rep.requested == 8
    assert rep.failed == {"http_404": 1, "timeout": 1, "too_large": 2, "not_an_image": 1}
    assert _Handler.hits["/missing.jpg"] == 1  # a 404 is not retried
    assert _Handler.hits["/slow.jpg"] == 2  # a timeout is retried `retries` times
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([safe_name("ok"), safe_name("a/b:c?"), safe_name("flaky")])
    for p in tmp_path.iterdir():
        Image.open(p).verify()
    # resume: present files are not fetched again
    before = dict(_Handler.hits)
    rep2 = download_images(jobs[:3], tmp_path, **kw)
    assert rep2.already_present == 3 and rep2.downloaded == 0 and _Handler.hits == before


def test_safe_name_is_safe_and_injective():
    assert safe_name("B000123") == "B000123.jpg"
    odd = [safe_name(x) for x in ("../etc/passwd", "a/b", "a_b", "a:b", "")]
    assert all("/" not in n and not n.startswith(".") for n in odd)
    assert len(set(odd)) == len(odd)


def test_stage_downloads_missing_images_once(tmp_path, server):
    import json
    import shutil
    from pathlib import Path

    import polars as pl

    from mmrec.config import parse_params
    from mmrec.data.stage import run
    from mmrec.paths import ingest_dir

    fix = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "amazon2018"
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(fix / "Toys.json", raw / "Toys.json")
    urls = {"I1": "/ok.jpg", "I2": "/missing.jpg", "I3": "/text.jpg"}
    meta = [json.dumps({"asin": f"I{i}", "title": f"t{i}",
                        "imageURLHighRes": [server + urls.get(f"I{i}", "/ok.jpg")]})
            for i in range(1, 7)]
    (raw / "meta_Toys.json").write_text("\n".join(meta) + "\n")
    p = parse_params({"data": {"name": "dl", "raw_dir": str(raw), "min_user_interactions": 3,
                               "images": {"workers": 2, "timeout_s": 2, "retries": 0,
                                          "allow_private": True}}})
    res = run(p, root=tmp_path)
    assert res["images"]["downloaded"] == 4 and res["images"]["failed"] == {
        "http_404": 1, "not_an_image": 1}
    steps = {f["step"]: f["rows_dropped"] for f in res["filters"]}
    assert steps["image_download_failed"] > 0  # I2, I3 lost their image: rows dropped, counted
    items = pl.read_parquet(ingest_dir(p, tmp_path) / "items.parquet")
    assert not {"I2", "I3"} & set(items["item_id"]) and items["has_image"].all()
    hits = dict(_Handler.hits)
    res2 = run(p, root=tmp_path)  # resume: downloaded files are local now; only failures retried
    assert res2["images"]["requested"] == 2 and res2["images"]["failed_total"] == 2
    assert _Handler.hits["/ok.jpg"] == hits["/ok.jpg"]
