"""A static HTTP server for tests: a read-only mirror of a store directory.

stdlib ``ThreadingHTTPServer`` serving one directory on 127.0.0.1.  fsspec's
``HTTPFileSystem`` can ``cat``/``info``/``exists`` files in it (HEAD gives
Content-Length).  Only GET/HEAD are served; anything else gets 405, like a
real static mirror.  Directory listings are not needed (the store layout has
index files) and are disabled (404), so clients never rely on them.

``mirror.endless`` holds URL paths the server answers with a body that never ends
(chunked, no length), like a hostile or broken mirror streaming forever.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def list_directory(self, path):
        self.send_error(404, "Not Found")
        return None

    def _refuse(self):
        self.send_error(405, "Method Not Allowed")

    do_PUT = do_POST = do_DELETE = do_PATCH = _refuse

    def _endless(self) -> bool:
        return self.path.split("?", 1)[0] in self.server.endless

    def do_HEAD(self):
        if not self._endless():
            return super().do_HEAD()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def do_GET(self):
        if not self._endless():
            return super().do_GET()
        self.do_HEAD()
        chunk = b"%x\r\n" % (1 << 16) + b"\0" * (1 << 16) + b"\r\n"
        try:
            while not self.server.stopping:  # until the client hangs up
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endless: set = set()
    stopping = False

    def handle_error(self, request, client_address):
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return  # a client closing a keep-alive connection
        super().handle_error(request, client_address)


@dataclass
class HTTPMirror:
    root: Path
    url: str
    _server: ThreadingHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def storage_options(self) -> dict:
        return {}

    @property
    def endless(self) -> set:
        """URL paths (``/objects/ab/cd...``) served as bodies that never end."""
        return self._server.endless

    def stop(self) -> None:
        self._server.stopping = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def start_http_mirror(root: str | Path, host: str = "127.0.0.1") -> HTTPMirror:
    root = Path(root)
    handler = functools.partial(_Handler, directory=str(root))
    server = _Server((host, 0), handler)
    server.endless = set()
    thread = threading.Thread(target=server.serve_forever, name="mlds-test-http", daemon=True)
    thread.start()
    port = server.server_address[1]
    return HTTPMirror(root=root, url=f"http://{host}:{port}", _server=server, _thread=thread)
