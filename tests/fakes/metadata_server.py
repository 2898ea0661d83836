"""The instance metadata server a Cloud Run container gets its credentials from.

On Cloud Run, application-default credentials are the service's (or job's) account, read
from the metadata server: `google.auth.default()` pings it, reads the project and the
account, then asks it for access tokens. Pointing `GCE_METADATA_HOST`/`GCE_METADATA_IP` at
this server gives a container-like process exactly that path, offline — e.g. prefect-gcp's
`GcpCredentials()` block with no key, as the results block is registered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ROOT = "/computeMetadata/v1/"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def answers(project: str, account: str) -> dict[str, tuple[str, bytes]]:
    """path → (content type, body): what the metadata server says about this instance."""
    token = {"access_token": "metadata-fake-token", "expires_in": 3600, "token_type": "Bearer"}
    account_info = {"email": account, "scopes": SCOPES, "aliases": ["default"]}
    as_json = "application/json"
    return {
        "/": ("text/plain", b""),  # google.auth's ping: only the Metadata-Flavor header counts
        f"{ROOT}project/project-id": ("text/plain", project.encode()),
        f"{ROOT}instance/service-accounts/default/": (as_json, json.dumps(account_info).encode()),
        f"{ROOT}instance/service-accounts/default/token": (as_json, json.dumps(token).encode()),
    }


@contextmanager
def metadata_server(project: str, account: str) -> Iterator[str]:
    """Serve the instance metadata of `account` in `project`; yields `127.0.0.1:PORT`."""
    known = answers(project, account)

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = known.get(urlsplit(self.path).path)
            content_type, body = found or ("text/plain", b"not found")
            self.send_response(200 if found else 404)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
