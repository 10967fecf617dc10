"""The UI's static files (the chart page, its ES modules, the vendored libraries), compressed and
with cache headers.

Rules:
- Text files (HTML, JS, CSS, JSON, SVG, source maps) are gzipped when the request's
  Accept-Encoding allows it (`http_common.accepts_gzip`) and never otherwise; they always say
  `Vary: Accept-Encoding`. Binary files (PNG) are sent as they are.
- The gzipped body of a file is computed once per (path, size, mtime) and kept (the UI is a
  few hundred KB); a changed file is compressed again. The ETag stays the file's own
  (Starlette's, from size and mtime): the encoding is negotiated, the validator names the file.
- Caching: the page and our modules have no build step and no hashed names, so they are
  `no-cache` (every use revalidates: a 304 when unchanged, the new file right after an
  upgrade). The vendored libraries (`vendor/`, pinned by package-lock.json) change only with
  a release, so they may be reused for a day without asking.
"""

from __future__ import annotations

import gzip
import os
from typing import Final

from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from fxconnector.runtime.publish.http_common import accepts_gzip

#: Media types worth compressing (by prefix).
_COMPRESSIBLE: Final = (
    "text/",
    "application/javascript",
    "application/json",
    "image/svg+xml",
)
VENDOR_CACHE: Final = "public, max-age=86400"
APP_CACHE: Final = "no-cache"
_GZIP_LEVEL: Final = 6
_KEPT_HEADERS: Final = ("etag", "last-modified", "content-type")


class StaticUi(StaticFiles):
    """`StaticFiles` with gzip and cache headers (module rules)."""

    def __init__(self, *, directory: str | os.PathLike[str]) -> None:
        super().__init__(directory=directory, html=True)
        self._gzipped: dict[str, tuple[tuple[int, int], bytes]] = {}

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        vendor = path.replace(os.sep, "/").startswith("vendor/")
        response.headers["cache-control"] = VENDOR_CACHE if vendor else APP_CACHE
        if not isinstance(response, FileResponse) or not _compressible(response.media_type):
            return response
        response.headers["vary"] = "Accept-Encoding"
        if response.status_code != 200 or scope["method"] != "GET":
            return response
        headers = dict(scope.get("headers") or [])
        if not accepts_gzip(headers.get(b"accept-encoding", b"").decode("latin-1")):
            return response
        body = self._gzip(str(response.path), response.stat_result)
        kept = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
        kept["cache-control"] = response.headers["cache-control"]
        kept["vary"] = "Accept-Encoding"
        kept["content-encoding"] = "gzip"
        return Response(body, headers=kept)

    def _gzip(self, path: str, stat: os.stat_result | None) -> bytes:
        version = (stat.st_size, stat.st_mtime_ns) if stat is not None else (-1, -1)
        cached = self._gzipped.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        with open(path, "rb") as file:
            body = gzip.compress(file.read(), compresslevel=_GZIP_LEVEL, mtime=0)
        self._gzipped[path] = (version, body)
        return body


def _compressible(media_type: str | None) -> bool:
    return media_type is not None and media_type.startswith(_COMPRESSIBLE)
