"""A tiny fake FHIR server on loopback for the security tests: bounded, and it stops by itself.

Each :class:`FakeServer` listens on 127.0.0.1 on its own free port, so two of them are two
*origins* (same scheme and host, another port). Every request is recorded (method, path
with query, headers) before a route function answers it. Bounds: at most
``max_requests`` requests are answered (the rest get 503 and count as ``overflow``), and a
timer shuts the server down after ``lifetime`` seconds even if a test forgets to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

SECRET = "tok-3e1f-SECRET-bearer"


@dataclass
class Seen:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


Reply = tuple[int, dict[str, str], Any]  # status, headers, body (dict → JSON, bytes, str)
Route = Callable[["FakeServer", Seen], Reply]


def bundle(entries: list[dict[str, Any]], next_url: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in entries],
        **extra,
    }
    if next_url:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


CAPABILITY = {"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "status": "active"}


@dataclass
class FakeServer:
    route: Route
    max_requests: int = 200
    lifetime: float = 30.0
    seen: list[Seen] = field(default_factory=list)
    overflow: int = 0

    def __post_init__(self) -> None:
        fake = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a stuck client cannot hold a handler thread longer

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with lock:
                    fake.seen.append(seen)
                    over = len(fake.seen) > fake.max_requests
                    if over:
                        fake.overflow += 1
                status, headers, body = (503, {}, b"") if over else fake.route(fake, seen)
                if isinstance(body, dict | list):
                    data = orjson.dumps(body)
                    headers = {"Content-Type": "application/fhir+json", **headers}
                else:
                    data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.origin}/fhir"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        self._timer.cancel()
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()

    def with_token(self) -> list[Seen]:
        return [s for s in self.seen if s.authorization]


def no_route(server: FakeServer, seen: Seen) -> Reply:
    return (
        404,
        {},
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]},
    )
