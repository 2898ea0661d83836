"""A `/v1/chat/completions` endpoint that always gives one answer, on 127.0.0.1.

For tests whose subject is what happens around the smoke test (the orchestrator's imports,
traffic moves), not the model's answer: no model loads, so it is ready at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def answering_server(content: str) -> Iterator[str]:
    """Yields the base URL of a server answering every chat completion with `content`."""
    body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
