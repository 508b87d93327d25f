"""A real S3 API for tests: moto's server mode, optionally behind a proxy that throttles.

``FlakyS3Proxy`` forwards every request to the moto server unchanged, except that every k-th
request is answered ``503 SlowDown`` (the S3 throttling response, with S3's XML error body), so
the retry path of botocore/s3fs and of our engines runs against real HTTP.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOWDOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message><RequestId>flaky-proxy</RequestId></Error>")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class MotoS3:
    """moto's S3 in server mode on 127.0.0.1 (a real HTTP API, reachable from any process)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Port 0: the kernel picks a free port as the server binds it (no window in which another
        # process can take a port chosen earlier); the bound port is read back.
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()


class FlakyS3Proxy:
    """HTTP proxy to ``upstream``; answers every ``every``-th request with 503 SlowDown.

    ``outage=(substring, n)``: also answer the first ``n``
    GETs whose path contains ``substring`` with 503 SlowDown, consecutively (an outage of one object
    that outlasts the client's retries)."""

    def __init__(self, upstream_port: int, every: int = 3, outage: tuple[str, int] | None = None) -> None:
        self.upstream_port = upstream_port
        self.every = every
        self.outage = outage
        self.outage_throttled = 0
        self.requests = 0
        self.throttled = 0
        self.by_method: Counter[str] = Counter()  # requests per HTTP method (LIST is a GET), for benchmarks
        self.log: list[tuple[str, str]] = []  # (method, path) of every request, in arrival order
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                body = self._body()
                with proxy.lock:
                    proxy.requests += 1
                    listing = self.command == "GET" and ("list-type=" in self.path or "?prefix=" in self.path)
                    proxy.by_method["LIST" if listing else self.command] += 1
                    proxy.log.append(("LIST" if listing else self.command, self.path))
                    throttle = proxy.every > 0 and proxy.requests % proxy.every == 0
                    if (proxy.outage and self.command == "GET" and proxy.outage[0] in self.path
                            and proxy.outage_throttled < proxy.outage[1]):
                        proxy.outage_throttled += 1
                        throttle = True
                    if throttle:
                        proxy.throttled += 1
                if throttle:
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN_BODY)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOWDOWN_BODY)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                    self.send_header("Content-Length", length or "0")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
