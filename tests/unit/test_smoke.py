"""The smoke check against a real loopback HTTP server answering like an OpenAI endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.contracts import Endpoint, SmokeTestFailed, TransientError
from core.smoke import run_smoke_test


class _Canned(BaseHTTPRequestHandler):
    """Answers every POST with the status and body the test put on the server."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.requests.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        status, body = self.server.reply  # type: ignore[attr-defined]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    httpd.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _endpoint(server: ThreadingHTTPServer) -> Endpoint:
    host, port = server.server_address[:2]
    return Endpoint(
        base_url=f"http://{host}:{port}", model="emoji-gemma", engine="t", server_id="1"
    )


def _chat(content: str | None) -> dict[str, object]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def test_emoji_answer_passes_and_request_is_greedy(server: ThreadingHTTPServer) -> None:
    server.reply = (200, _chat(" 🍌🤔😋🥣 "))  # type: ignore[attr-defined]
    result = run_smoke_test(_endpoint(server), "Translate to emoji: banana", 16, 10)
    assert result.answer == "🍌🤔😋🥣"
    assert result.emoji_count == 4
    request = server.requests[0]  # type: ignore[attr-defined]
    assert request["model"] == "emoji-gemma"
    assert request["temperature"] == 0.0
    assert request["messages"] == [{"role": "user", "content": "Translate to emoji: banana"}]


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        ((200, _chat("banana soup")), SmokeTestFailed, "no emoji"),
        ((200, _chat("")), SmokeTestFailed, "empty"),
        ((200, _chat(None)), SmokeTestFailed, "empty"),
        ((200, {"detail": "nope"}), SmokeTestFailed, "not a chat completion"),
        ((404, {"detail": "model not found"}), SmokeTestFailed, "HTTP 404"),
        ((503, {"detail": "loading"}), TransientError, "HTTP 503"),
        ((429, {"detail": "slow down"}), TransientError, "HTTP 429"),
    ],
)
def test_bad_answers_fail_and_only_overload_is_transient(
    server: ThreadingHTTPServer, reply: tuple[int, object], error: type[Exception], message: str
) -> None:
    server.reply = reply  # type: ignore[attr-defined]
    with pytest.raises(error, match=message):
        run_smoke_test(_endpoint(server), "Translate to emoji: banana", 16, 10)


def test_unreachable_server_is_transient() -> None:
    endpoint = Endpoint(base_url="http://127.0.0.1:9", model="m", engine="t", server_id="1")
    with pytest.raises(TransientError, match="could not reach"):
        run_smoke_test(endpoint, "hi", 4, 2)
