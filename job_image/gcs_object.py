"""Read one exact generation of a `gs://` dataset object, with no Google client library.

The orchestrator pins the generation (from the GCS event) and records it in the lineage; the
job downloads exactly that generation over the GCS JSON API, so an upload landing mid-run
cannot change what trains. Credentials: on Cloud Run the metadata server's token for the
job's service account; `STORAGE_EMULATOR_HOST` (tests) takes no token.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from config import InputError

GCS_SCHEME = "gs://"
GOOGLE_STORAGE = "https://storage.googleapis.com"
METADATA_TOKEN = (
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
)
TIMEOUT_S = 300


def is_gcs_uri(value: str) -> bool:
    return value.startswith(GCS_SCHEME)


def _token() -> str:
    request = urllib.request.Request(METADATA_TOKEN, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.load(response)["access_token"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(
            "a gs:// dataset needs the metadata server's token (run the job on Google Cloud) "
            f"or STORAGE_EMULATOR_HOST ({exc})"
        ) from exc


def download_generation(uri: str, generation: str | None, dest_dir: Path) -> Path:
    """`dest_dir/<object name>` holding generation `generation` of `uri`."""
    bucket, _, name = uri.removeprefix(GCS_SCHEME).partition("/")
    if not bucket or not name or not (generation or "").isdigit():
        raise InputError(
            f"dataset {uri!r}: pass gs://BUCKET/PATH.jsonl with --dataset-revision <generation>"
        )
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    query = urllib.parse.urlencode({"alt": "media", "generation": generation})
    url = (
        f"{(emulator or GOOGLE_STORAGE).rstrip('/')}/download/storage/v1/b/{bucket}/o/"
        f"{urllib.parse.quote(name, safe='')}?{query}"
    )
    headers = {} if emulator else {"Authorization": f"Bearer {_token()}"}
    dest = dest_dir / Path(name).name
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=TIMEOUT_S) as response:  # fmt: skip
            dest.write_bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise InputError(
            f"dataset {uri} generation {generation}: HTTP {exc.code} (a generation the bucket "
            "no longer keeps, or no read access for the job's service account)"
        ) from exc
    return dest
