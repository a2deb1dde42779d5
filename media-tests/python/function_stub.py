"""A webhook standing in for a Lambda function (`[lambda_functions.NAME]` in the server's config): it
keeps every event it is sent and answers what the test's `answer(event)` gives, `(status, document)`,
the document as JSON (or no body when it is None)."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Callable


class FunctionStub:
    def __init__(self, answer: Callable[[dict], tuple[int, dict | None]]):
        self.events: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server interface
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.events.append(event)
                    status, document = answer(event)
                body = b"" if document is None else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fn"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
