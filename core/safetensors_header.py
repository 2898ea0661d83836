"""Parse and validate a safetensors header with two ranged reads, never the whole file.

Weights can be many gigabytes in a bucket. Everything needed to prove a file is structurally
whole — tensor names, dtypes, shapes and byte offsets — sits in the first few kilobytes, so
the check costs the same on GCS as on a local disk. A truncated upload is caught here even
when its manifest was (wrongly) written for the truncated bytes: the header still promises
the original length.

Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the tensor data.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

LENGTH_PREFIX_BYTES = 8
# The safetensors library itself refuses headers above 100 MB; a real one is kilobytes.
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"

# Element sizes in *bits* (FP4/FP6 are packed below a byte).
DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
FLOAT_DTYPES = frozenset(
    {"F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F16", "BF16", "F32", "F64"}
)

# (start, length) -> bytes; a store's ranged read bound to one path.
RangeReader = Callable[[int, int], bytes]


class HeaderError(ValueError):
    """The file is not a whole, well-formed safetensors file; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it (offsets are relative to the data section)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of one file: its tensors and free-form string metadata."""

    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str]
    data_start: int

    @property
    def parameter_count(self) -> int:
        return sum(info.numel for info in self.tensors.values())


def read_header(read: RangeReader, file_size: int) -> SafetensorsHeader:
    """Parse the header of a file of `file_size` bytes; raise HeaderError on any defect."""
    if file_size < LENGTH_PREFIX_BYTES:
        raise HeaderError(f"only {file_size} bytes: too small to be a safetensors file")
    (header_len,) = struct.unpack("<Q", read(0, LENGTH_PREFIX_BYTES))
    if header_len > MAX_HEADER_BYTES:
        raise HeaderError(
            f"header length {header_len} is absurd (limit {MAX_HEADER_BYTES}): "
            "not a safetensors file, or a corrupt first 8 bytes"
        )
    if header_len > file_size - LENGTH_PREFIX_BYTES:
        raise HeaderError(
            f"header length {header_len} runs past the end of the {file_size}-byte file "
            "(truncated, or not a safetensors file)"
        )
    raw = read(LENGTH_PREFIX_BYTES, header_len)
    if len(raw) != header_len:
        raise HeaderError(f"could read only {len(raw)} of {header_len} header bytes")
    header = _decode_json(raw)
    metadata = _parse_metadata(header.pop(METADATA_KEY, None))
    tensors = {name: _parse_entry(name, entry) for name, entry in header.items()}
    data_start = LENGTH_PREFIX_BYTES + header_len
    _check_layout(tensors, file_size - data_start)
    return SafetensorsHeader(tensors=tensors, metadata=metadata, data_start=data_start)


def _decode_json(raw: bytes) -> dict[str, Any]:
    """The header must be one JSON object (trailing space padding is allowed by the format)."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise HeaderError(f"header is a JSON {type(header).__name__}, not an object")
    return header


def _parse_metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise HeaderError(f"{METADATA_KEY} must map strings to strings")
    return dict(value)


def _is_count(value: object) -> bool:
    """A non-negative int that is not a bool (JSON true would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_entry(name: str, entry: object) -> TensorInfo:
    """Validate one tensor entry: known dtype, integer shape, ordered offsets, exact size."""
    if not isinstance(entry, dict):
        raise HeaderError(f"tensor {name!r}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise HeaderError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise HeaderError(f"tensor {name!r}: shape {shape!r} is not a list of sizes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise HeaderError(f"tensor {name!r}: data_offsets {offsets!r} are not [begin, end]")
    info = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
    bits = info.numel * DTYPE_BITS[dtype]
    if bits % 8 or info.end - info.start != bits // 8:
        raise HeaderError(
            f"tensor {name!r}: {dtype}{list(shape)} needs {bits / 8:g} bytes "
            f"but its offsets span {info.end - info.start}"
        )
    return info


def _check_layout(tensors: Mapping[str, TensorInfo], data_bytes: int) -> None:
    """Tensors must tile the data section exactly: no gaps, no overlaps, no missing tail."""
    position = 0
    for info in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start != position:
            kind = "overlaps the previous tensor" if info.start < position else "leaves a gap"
            raise HeaderError(f"tensor {info.name!r} at data offset {info.start} {kind}")
        position = info.end
    if position > data_bytes:
        raise HeaderError(
            f"truncated: the header describes {position} bytes of tensor data "
            f"but the file holds only {data_bytes}"
        )
    if position < data_bytes:
        raise HeaderError(f"{data_bytes - position} unexplained bytes after the last tensor")
