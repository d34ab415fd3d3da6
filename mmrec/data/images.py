"""Item images: safe file names, local look-up, and a resumable, verifying URL downloader.

Layout: every fetched or shipped Amazon image lives at `<raw_dir>/images/<safe id>.jpg`. The
readers look there first, so a file that is already present is never fetched again (resume),
and a dataset can ship its images (the embedded sample does) with no URLs at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mmrec.io import atomic_path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(item_id: str, suffix: str = ".jpg") -> str:
    """A file name for `item_id` that is safe on every file system.

    Ids made only of [A-Za-z0-9._-] (all real asins) are used as they are; anything else is
    replaced by `_` and a short hash is appended, so two different ids never share a file.
    """
    item_id = str(item_id)
    clean = _UNSAFE.sub("_", item_id).strip("._")[:100]
    if clean != item_id or not clean:
        clean = f"{clean or 'id'}-{hashlib.sha1(item_id.encode()).hexdigest()[:10]}"
    return clean + suffix


def list_images(folder: Path) -> set[str]:
    """Names of the non-empty files in `folder` (one directory listing instead of N stats)."""
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0}


@dataclass
class DownloadReport:
    """What one downloader run did; failures are counted by reason with a few examples."""

    requested: int = 0
    already_present: int = 0
    downloaded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _fail(self, item_id: str, url: str, reason: str, detail: str) -> None:
        with self._lock:
            self.failed[reason] = self.failed.get(reason, 0) + 1
            if len(self.examples) < 5:
                self.examples.append({"item_id": item_id, "url": url, "reason": reason,
                                      "detail": detail[:200]})

    def to_dict(self) -> dict:
        return {"requested": self.requested, "already_present": self.already_present,
                "downloaded": self.downloaded, "failed_total": sum(self.failed.values()),
                "failed": dict(sorted(self.failed.items())), "examples": self.examples}


class _Permanent(Exception):
    """A failure that retrying cannot fix (404, too large, not an image, refused address)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# ------------------------------------------------------------------------- local image sources

def inside(path: Path, root: Path) -> bool:
    """True when `path`, with every symlink resolved, lies inside `root` (also resolved)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop cannot be inside anything
        return False


def local_image_ref(ref: str, raw_dir: Path) -> tuple[str | None, str | None]:
    """Check a non-http(s) image reference from the metadata: `(relative path, None)` when it
    names an existing file inside `raw_dir` (symlinks resolved), else `(None, refusal reason)`.

    Absolute paths, other URL schemes (file:, ftp:, data:...) and `..` escapes are refused: an
    image source is never read from outside the dataset the user pointed at.
    """
    ref = ref.strip()
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", ref):
        return None, "image_source_refused:scheme"
    if ref.startswith(("/", "\\")) or Path(ref).is_absolute():
        return None, "image_source_refused:absolute_path"
    target = raw_dir / ref
    if not inside(target, raw_dir):
        return None, "image_source_refused:outside_raw_dir"
    if not target.is_file():
        return None, "image_source_missing"
    return Path(ref).as_posix(), None


def list_local_images(folder: Path, root: Path) -> tuple[set[str], set[str]]:
    """(usable, refused) names in `folder`: usable = non-empty files resolving inside `root`;
    refused = entries (symlinks) that resolve outside it, which callers count as skips."""
    names = list_images(folder)
    refused = {n for n in names if (folder / n).is_symlink() and not inside(folder / n, root)}
    return names - refused, refused


# ---------------------------------------------------------------------------------- decoding

#: Default pixel cap (data.images.max_pixels): 40 MP is above any product photo, far below a bomb.
DEFAULT_MAX_PIXELS = 40_000_000
#: Longest/shortest side ratio above which an image is refused: resizing the short side of a
#: 30000x1 strip to 256 px would allocate gigabytes.
MAX_ASPECT = 50


class ImageRefused(ValueError):
    """The header announces an image too large (pixels or aspect) to decode safely."""


def open_checked(source: "str | Path | bytes", max_pixels: int = DEFAULT_MAX_PIXELS):
    """Open an image and check its header size before any pixel is decoded.

    PIL's own decompression-bomb guard is set from `max_pixels` too, so formats whose size is
    only known while decoding are still bounded. Returns an open (not yet loaded) PIL image.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels  # PIL raises DecompressionBombError above twice this
    # ... and only warns between 1x and 2x, where the check below raises a clearer error.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as err:  # PIL's guard fired first (over twice the cap)
        raise ImageRefused(f"{err} (data.images.max_pixels={max_pixels:,})") from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise ImageRefused(f"{w}x{h} = {w * h:,} pixels exceeds data.images.max_pixels={max_pixels:,}")
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT * min(w, h):
        img.close()
        raise ImageRefused(f"{w}x{h}: aspect ratio over {MAX_ASPECT}:1 (a strip, not a product photo)")
    return img


def unreadable_images(paths: Iterable[str], root: str | Path = ".", max_pixels: int = DEFAULT_MAX_PIXELS,
                      examples: int = 5) -> dict[str, Any]:
    """Pictures whose header cannot be read, or that the pixel cap refuses: {count, examples}.

    Header only (no pixel is decoded), so it is cheap enough for ingest to check every picture
    and say in its report how many will fail extraction, before any encoder runs.
    """
    bad: list[dict[str, str]] = []
    count = 0
    for rel in paths:
        p = Path(rel) if Path(rel).is_absolute() else Path(root) / rel
        try:
            open_checked(p, max_pixels).close()
        except Exception as err:  # noqa: BLE001 - any failure to open is what we count
            count += 1
            if len(bad) < examples:
                bad.append({"path": str(rel), "reason": f"{type(err).__name__}: {err}"[:200]})
    return {"count": count, "examples": bad}


def decode_rgb(source: "str | Path | bytes", max_pixels: int = DEFAULT_MAX_PIXELS):
    """Decode to an 8-bit RGB PIL image the way a person sees the file.

    EXIF orientation is applied; transparency (RGBA, LA, palette with a transparent index) is
    composited on white rather than dropped to black; 16/32-bit greyscale is scaled to 8 bits
    instead of clipped to white; palette and CMYK images are converted.
    """
    import numpy as np
    from PIL import Image, ImageOps

    with open_checked(source, max_pixels) as img:
        img.load()  # full decode: a truncated file fails here
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if mode == "F" and a.max(initial=0) <= 1.0:
            top = 1.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


# ---------------------------------------------------------------------------------- fetching

def address_allowed(ip: str, allow_private: bool, allow_networks: tuple[str, ...] = ()) -> bool:
    """May we connect to `ip`? Public unicast always; loopback, private, link-local, reserved,
    multicast and unspecified only with `allow_private` or inside an `allow_networks` CIDR."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in ipaddress.ip_network(n, strict=False) for n in allow_networks):
        return True
    return allow_private or (addr.is_global and not addr.is_multicast)


def _resolve(host: str, port: int, allow_private: bool, allow_networks: tuple[str, ...]) -> str:
    """The first address of `host`, refused before any connection when it is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise OSError(f"cannot resolve {host!r}: {err}") from None
    ips = [info[4][0] for info in infos]
    bad = [ip for ip in ips if not address_allowed(ip, allow_private, allow_networks)]
    if bad:  # one bad address refuses the host: DNS could hand it out on the next lookup
        raise _Permanent("private_address", f"{host} resolves to {bad[0]}, a loopback/private/"
                         "link-local address (set data.images.allow_private: true to allow)")
    return ips[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever a second lookup returns."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


MAX_REDIRECTS = 5


def _fetch(url: str, timeout_s: float, max_bytes: int, *, deadline_s: float = 30.0,
           allow_private: bool = False, allow_networks: tuple[str, ...] = ()) -> bytes:
    """GET `url` within `deadline_s` in total (connect, headers, body, every redirect hop).

    Each hop's host is resolved and checked before connecting; the body is read in pieces and
    abandoned as soon as it passes `max_bytes`; a watchdog shuts the socket at the deadline, so
    a server trickling one byte at a time cannot hold the download.
    """
    deadline = time.monotonic() + deadline_s
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Permanent("bad_url", f"not an http(s) URL: {url[:200]}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"download deadline of {deadline_s}s passed")
        conn, path = _connection(parts, port, min(timeout_s, remaining), allow_private, allow_networks)
        watchdog = threading.Timer(remaining, _shut, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", path, headers={"User-Agent": "mmrec-image-fetch/0.1",
                                               "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                loc = resp.getheader("Location")
                if not loc:
                    raise _Permanent(f"http_{resp.status}", "redirect without a Location")
                url = urllib.parse.urljoin(url, loc)  # checked like the first URL next turn
                continue
            if resp.status >= 400:
                if 400 <= resp.status < 500 and resp.status not in (408, 429):
                    raise _Permanent(f"http_{resp.status}", f"HTTP {resp.status} {resp.reason}")
                raise OSError(f"HTTP {resp.status} {resp.reason}")
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise _Permanent("too_large", f"Content-Length {length} > {max_bytes}")
            pieces, size = [], 0
            while True:
                piece = resp.read1(65536)
                if not piece:
                    break
                size += len(piece)
                if size > max_bytes:
                    raise _Permanent("too_large", f"body exceeds {max_bytes} bytes")
                pieces.append(piece)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"download deadline of {deadline_s}s passed")
            if time.monotonic() > deadline:
                raise TimeoutError(f"download deadline of {deadline_s}s passed")
            return b"".join(pieces)
        except (OSError, http.client.HTTPException) as err:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"download deadline of {deadline_s}s passed") from None
            raise err
        finally:
            watchdog.cancel()
            conn.close()
    raise _Permanent("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")


def _connection(parts: urllib.parse.SplitResult, port: int, timeout: float, allow_private: bool,
                allow_networks: tuple[str, ...]) -> tuple[http.client.HTTPConnection, str]:
    """(connection, request target) for one hop, after the address check.

    Direct: the host is resolved here, checked, and the connection pinned to that address.
    Through the proxy the environment names (http_proxy/https_proxy, honoured as urllib does):
    the proxy resolves the name, so only hosts written as addresses (or `localhost`) can be
    checked here; the proxy itself is trusted, being the user's own setting.
    """
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        ip = _resolve(host, port, allow_private, allow_networks)
        cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        return cls(host, port, ip, timeout), target
    try:
        literal = ipaddress.ip_address(host).compressed
    except ValueError:
        literal = "127.0.0.1" if host.lower() == "localhost" else None
    if literal is not None:
        _resolve(literal, port, allow_private, allow_networks)
    pp = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(pp.hostname, pp.port or 80, timeout=timeout,
                                           context=ssl.create_default_context())
        conn.set_tunnel(host, port)
        return conn, target
    return http.client.HTTPConnection(pp.hostname, pp.port or 80, timeout=timeout), \
        urllib.parse.urlunsplit(parts._replace(fragment=""))


def _shut(conn: http.client.HTTPConnection) -> None:
    """Watchdog: unblock a read stuck on a slow server by shutting its socket down."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _verify_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    from PIL import UnidentifiedImageError

    try:
        decode_rgb(data, max_pixels)
    except ImageRefused as err:
        raise _Permanent("too_many_pixels", str(err)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise _Permanent("not_an_image", f"{type(err).__name__}: {err}") from None


def download_images(jobs: Iterable[tuple[str, str]], out_dir: str | Path, *, workers: int = 16,
                    timeout_s: float = 10.0, retries: int = 3, max_bytes: int = 10_000_000,
                    deadline_s: float = 30.0, max_pixels: int = DEFAULT_MAX_PIXELS,
                    allow_private: bool = False, allow_networks: Iterable[str] = (),
                    backoff_s: float = 0.5, progress: bool = True) -> DownloadReport:
    """Fetch `(item_id, url)` pairs into `out_dir/<safe_name(item_id)>`, once.

    Files already present are skipped (resume). Each attempt must finish within `deadline_s`
    (socket reads within `timeout_s`); timeouts, connection errors and 5xx are retried `retries`
    times with exponential backoff; 4xx, bodies over `max_bytes`, images over `max_pixels`,
    loopback/private/link-local hosts (unless allowed) and bytes that PIL cannot decode fail at
    once. At most `workers` downloads run at a time. Files appear atomically, so an interrupted
    run never leaves a half image that a later run would take as done.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    present = list_images(out_dir)
    nets = tuple(allow_networks)
    for n in nets:
        ipaddress.ip_network(n, strict=False)  # a malformed CIDR fails here, not per download
    rep = DownloadReport()
    todo: list[tuple[str, str]] = []
    for item_id, url in jobs:
        rep.requested += 1
        if safe_name(item_id) in present:
            rep.already_present += 1
        else:
            todo.append((item_id, url))

    def one(job: tuple[str, str]) -> bool:
        item_id, url = job
        last = ""
        for attempt in range(retries + 1):
            try:
                data = _fetch(url, timeout_s, max_bytes, deadline_s=deadline_s,
                              allow_private=allow_private, allow_networks=nets)
                _verify_image(data, max_pixels)
                with atomic_path(out_dir / safe_name(item_id)) as tmp:
                    tmp.write_bytes(data)
                return True
            except _Permanent as err:
                rep._fail(item_id, url, err.reason, str(err))
                return False
            except ValueError as err:  # malformed URL: retrying cannot help
                rep._fail(item_id, url, "bad_url", str(err))
                return False
            except (http.client.HTTPException, OSError) as err:  # TimeoutError is an OSError
                last = f"{type(err).__name__}: {err}"
                if attempt < retries:
                    time.sleep(backoff_s * (2 ** attempt))
        reason = "timeout" if ("timed out" in last.lower() or "deadline" in last) else "network"
        rep._fail(item_id, url, reason, f"after {retries + 1} attempts: {last}")
        return False

    if todo:
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(one, todo), total=len(todo), desc="images",
                                disable=not progress or len(todo) < 50))
        rep.downloaded = sum(results)
    return rep
