"""A thin OpenAI-shaped front for `transformers serve`, run as its parent in one process group.

`transformers serve` answers `GET /v1/models` from the Hugging Face hub cache (a 500 when there
is none, hub models when there is) and names the model `<name>@main` in every answer. vLLM's
`--served-model-name` gets both right, so clients written against Cloud Run would break only
locally. This front listens on the public port, answers `/v1/models` with the served name
itself, proxies everything else (`/health` included, so readiness still means the model
server is up) to `transformers serve` on a loopback port, and renames `<name>@<revision>` back
to `<name>` in JSON bodies and in server-sent events.

It starts the model server as its own child, in its own process group, so stopping the group
stops both; if the front dies without cleaning up, the kernel kills the child (Linux parent
death signal), and if the child dies the front exits with its code.

    python -m tasks.backends.local.openai_front --served-name NAME --host H --port P \
        --upstream-port Q -- transformers serve NAME --host 127.0.0.1 --port Q
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CHILD_GRACE_S = 5.0  # under stop_process_group's 10 s, so the front outlives its child
# Hop-by-hop and length/encoding headers: the front sets its own (bodies may be rewritten).
REQUEST_HEADERS_DROPPED = {"host", "content-length", "connection", "transfer-encoding"}
RESPONSE_HEADERS_DROPPED = {
    *("content-length", "connection", "transfer-encoding", "content-encoding"),
    *("date", "server"),  # the front's own server sets these
}
PR_SET_PDEATHSIG = 1


def rename_model(value: object, served_name: str) -> object:
    """`value` with every `"model": "<served_name>@<revision>"` (at any depth) renamed."""
    if isinstance(value, dict):
        return {
            key: served_name
            if key == "model" and isinstance(item, str) and item.split("@")[0] == served_name
            else rename_model(item, served_name)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [rename_model(item, served_name) for item in value]
    return value


def rename_json(body: bytes, served_name: str) -> bytes:
    """A JSON body with the model renamed; anything else (or nothing to rename) unchanged."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    renamed = rename_model(payload, served_name)
    return body if renamed == payload else json.dumps(renamed, ensure_ascii=False).encode()


def rename_event_line(line: str, served_name: str) -> str:
    """One server-sent-event line: `data: {...}` gets the model renamed, the rest passes."""
    field, colon, data = line.partition(":")
    if field != "data" or not colon or data.strip() in ("", "[DONE]"):
        return line
    renamed = rename_json(data.strip().encode(), served_name).decode()
    return line if renamed == data.strip() else f"data: {renamed}"


def model_card(served_name: str, created: int) -> dict[str, object]:
    return {"id": served_name, "object": "model", "created": created, "owned_by": "local"}


def build_app(served_name: str, upstream: str, on_shutdown: Callable[[], None]) -> Starlette:
    """The front: `/v1/models` answered here, every other path proxied to `upstream`."""
    created = int(time.time())
    client = httpx.AsyncClient(
        base_url=upstream,
        timeout=httpx.Timeout(None, connect=5.0),  # generation takes its time
    )

    async def list_models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_card(served_name, created)]})

    async def retrieve_model(request: Request) -> Response:
        if request.path_params["model"] == served_name:
            return JSONResponse(model_card(served_name, created))
        message = f"The model '{request.path_params['model']}' does not exist"
        error = {"message": message, "type": "invalid_request_error", "code": "model_not_found"}
        return JSONResponse({"error": error}, status_code=404)

    async def proxy(request: Request) -> Response:
        outgoing = client.build_request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=[(key, value) for key, value in request.headers.items()
                     if key.lower() not in REQUEST_HEADERS_DROPPED],
            content=await request.body(),
        )  # fmt: skip
        try:
            upstream_response = await client.send(outgoing, stream=True)
        except httpx.TransportError as error:  # still loading, or gone: not ready
            message = f"model server not reachable: {error!r}"
            return JSONResponse({"error": {"message": message}}, status_code=503)
        headers = {key: value for key, value in upstream_response.headers.items()
                   if key.lower() not in RESPONSE_HEADERS_DROPPED}  # fmt: skip
        content_type = upstream_response.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                body = await upstream_response.aread()
            finally:
                await upstream_response.aclose()
            return Response(rename_json(body, served_name), upstream_response.status_code, headers)
        return StreamingResponse(
            _relay(upstream_response, served_name, content_type.startswith("text/event-stream")),
            upstream_response.status_code,
            headers,
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()
            on_shutdown()  # before uvicorn re-raises SIGTERM and the process ends

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
            Route("/{path:path}", proxy, methods=methods),
        ],
        lifespan=lifespan,
    )


async def _relay(
    upstream_response: httpx.Response, served_name: str, events: bool
) -> AsyncIterator[bytes]:
    """Stream the upstream body on; events line by line with the model renamed."""
    try:
        if events:
            async for line in upstream_response.aiter_lines():
                yield (rename_event_line(line, served_name) + "\n").encode()
        else:
            async for chunk in upstream_response.aiter_bytes():
                yield chunk
    finally:
        await upstream_response.aclose()


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGKILL the child when this front dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return None  # elsewhere the group stop is what ends the child
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the front died before the request took effect
            os._exit(1)

    return arm


def stop_child(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the model server, give it `CHILD_GRACE_S`, then SIGKILL; reap it either way."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=CHILD_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.backends.local.openai_front",
        description="Serve NAME on HOST:PORT in front of the model server COMMAND, which "
        "must listen on 127.0.0.1:UPSTREAM_PORT.",
    )
    parser.add_argument("--served-name", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the model server")
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        parser.error("the model server command is missing after `--`")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the front until SIGTERM (then stop the child) or until the child exits (its code)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Same process group as the front (the group's leader): one group stop ends both.
    child = subprocess.Popen(args.command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent())
    app = build_app(args.served_name, f"http://127.0.0.1:{args.upstream_port}",
                    on_shutdown=lambda: stop_child(child))  # fmt: skip
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                       access_log=False, timeout_graceful_shutdown=int(CHILD_GRACE_S))
    )  # fmt: skip

    def exit_with_child() -> None:
        child.wait()
        server.should_exit = True

    threading.Thread(target=exit_with_child, daemon=True).start()
    print(
        f"openai_front: serving {args.served_name!r} on http://{args.host}:{args.port} in front "
        f"of the model server on 127.0.0.1:{args.upstream_port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    finally:
        stop_child(child)
    code = child.returncode
    print(f"openai_front: model server exited with code {code}", file=sys.stderr, flush=True)
    return code if code and code > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
