"""Where Google credentials come from, offline: an operator's ADC file, a container's metadata.

An operator's shell has application-default credentials of a user (`operator_adc`). On Cloud
Run, application-default credentials are the job's account, read from the metadata server:
`google.auth.default()` pings it, reads the project and the account, then asks it for access
tokens. Pointing `GCE_METADATA_HOST`/`GCE_METADATA_IP` at `metadata_server` gives a
container-like process exactly that path, offline — e.g. prefect-gcp's `GcpCredentials()`
block with no key, as bootstrap registers the results block.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from tests.fakes.canned_http import loopback_server

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


def operator_adc(folder: Path) -> Path:
    """An operator's application-default credentials file (user type): prefect-gcp's
    credentials block reads ADC when created; nothing is ever called with these."""
    adc = folder / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "test",
                               "client_secret": "test", "refresh_token": "test"}))  # fmt: skip
    return adc


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

    with loopback_server(Metadata) as url:
        yield url.removeprefix("http://")
