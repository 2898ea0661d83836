"""Google's discovery documents as a router and a request-body validator for the fake.

`google-api-python-client` ships the discovery document of every Google API. Routing on their
paths means the fake answers exactly the methods Google has (a misspelt path is a 404, as it
would be), and validating bodies against their schemas rejects unknown fields and bad enum
values the way Google does — so a request that passes here has Google's shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
APIS = (
    "run.v2",
    "secretmanager.v1",
    "artifactregistry.v1",
    "cloudbuild.v1",
    "serviceusage.v1",
    "serviceusage.v1beta1",  # consumer quota metrics (the GPU quota)
    "iam.v1",
    "cloudresourcemanager.v3",
    "logging.v2",
)
INT_FORMATS = frozenset({"int32", "uint32", "int64", "uint64"})
_DURATION = re.compile(r"^-?\d+(\.\d+)?s$")


class InvalidBody(ValueError):
    """The body does not match Google's schema (the message mimics Google's 400)."""


@dataclass(frozen=True)
class Route:
    """One API method: how to recognise its URL and which schema its body must have."""

    api: str
    method_id: str
    http_method: str
    pattern: re.Pattern[str]
    literal_chars: int
    request_schema: str | None

    @property
    def action(self) -> str:
        """The method's last word: get, list, create, patch, run, getIamPolicy…"""
        return self.method_id.rsplit(".", 1)[1]

    @property
    def mutating(self) -> bool:
        return self.action not in {"get", "list", "access", "getIamPolicy", "testIamPermissions"}


@cache
def document(api: str) -> dict[str, Any]:
    return json.loads((DOCUMENTS / f"{api}.json").read_text())


def _methods(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(resource.get("methods", {}).values())
    for child in resource.get("resources", {}).values():
        found += _methods(child)
    return found


def _compile(flat_path: str) -> tuple[re.Pattern[str], int]:
    parts = re.split(r"(\{[^}]+\})", flat_path)
    regex = "".join("[^/:]+" if part.startswith("{") else re.escape(part) for part in parts)
    literal = sum(len(part) for part in parts if not part.startswith("{"))
    return re.compile(f"^/{regex}$"), literal


@cache
def routes() -> tuple[Route, ...]:
    """Every method of the APIs the backend uses, most specific paths first."""
    found = []
    for api in APIS:
        for method in _methods(document(api)):
            pattern, literal = _compile(method.get("flatPath") or method["path"])
            found.append(
                Route(
                    api=api,
                    method_id=method["id"],
                    http_method=method["httpMethod"],
                    pattern=pattern,
                    literal_chars=literal,
                    request_schema=method.get("request", {}).get("$ref"),
                )
            )
    return tuple(sorted(found, key=lambda route: -route.literal_chars))


def match(http_method: str, path: str) -> Route | None:
    return next(
        (r for r in routes() if r.http_method == http_method and r.pattern.match(path)), None
    )


def validate(api: str, schema_name: str, body: object) -> None:
    """Raise InvalidBody for the first field Google would reject."""
    _check(document(api)["schemas"], {"$ref": schema_name}, body, schema_name)


def _check(schemas: dict[str, Any], schema: dict[str, Any], value: object, where: str) -> None:
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if not isinstance(value, dict):
            raise InvalidBody(f"Invalid value at '{where}': expected an object")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                _check(schemas, properties[key], item, f"{where}.{key}")
            elif isinstance(extra, dict):
                _check(schemas, extra, item, f"{where}[{key!r}]")
            elif key != "@type":
                raise InvalidBody(
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                    "Cannot find field."
                )
    elif kind == "array":
        if not isinstance(value, list):
            raise InvalidBody(f"Invalid value at '{where}': expected a list")
        for index, item in enumerate(value):
            _check(schemas, schema["items"], item, f"{where}[{index}]")
    elif "enum" in schema:
        allowed = schema["enum"]
        ok = value in allowed or (isinstance(value, int) and 0 <= value < len(allowed))
        if not ok:
            raise InvalidBody(f"Invalid value at '{where}' ({value!r}): not one of {allowed}")
    else:
        _check_scalar(kind, schema.get("format"), value, where)


def _check_scalar(kind: str | None, fmt: str | None, value: object, where: str) -> None:
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer" or fmt in INT_FORMATS:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.lstrip("-").isdigit()
        )
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif fmt == "google-duration":
        ok = isinstance(value, str) and bool(_DURATION.match(value))
    else:
        ok = isinstance(value, str)
    if not ok:
        raise InvalidBody(f"Invalid value at '{where}' ({value!r}): expected {fmt or kind}")
