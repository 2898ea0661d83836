"""Integrity checks of a model folder that need neither torch nor transformers.

These are the checks that judge bytes, not tensors: MANIFEST.json, every file's size and
sha256, the files a server needs, which safetensors files hold the weights, and every
weight file's header (names, dtypes, shapes, offsets). They go through the `ArtifactStore`
protocol only (listing, ranged reads, streamed hashing), so they cost the same on a GCS
prefix as on a local folder, and an orchestrator whose image has no torch can run them.

`config_field_problems` is the torch-free part of the architecture check: what can be
compared with config.json's own fields (LoRA leftovers, embedding shape, layer count, dtype).
The full comparison against a model built from config.json lives in `core.model_check` and
replaces it wherever torch is installed; `core.verification` decides which one runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.contracts import ArtifactStore
from core.safetensors_header import (
    FLOAT_DTYPES,
    HeaderError,
    SafetensorsHeader,
    TensorInfo,
    read_header,
)

MANIFEST_NAME = "MANIFEST.json"
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
MAX_MANIFEST_BYTES = 16 << 20
CONFIG_NAME = "config.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
# What the training job publishes besides the weights (job_image/model_folder.py's
# REQUIRED_FILES minus model.safetensors; a test keeps the two lists in step). The weights are
# checked on their own because a folder may hold them whole or sharded.
REQUIRED_NON_WEIGHT_FILES = (
    CONFIG_NAME,
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
LORA_MARKERS = ("lora_", ".base_layer.")
EMBEDDING_SUFFIX = "embed_tokens.weight"

MISSING_MANIFEST = (
    "MANIFEST.json missing: the training job did not finish (incomplete folder is never served)"
)
ADAPTER_ONLY = "adapter-only output: the LoRA adapter was not merged"
NAMES_SHOWN = 5
HEX_SHOWN = 12

# config.json's dtype names (torch's, as strings) → safetensors dtype codes.
SAFETENSORS_DTYPE_BY_NAME = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FileEntry:
    """What the manifest promises about one file."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The parts of MANIFEST.json verification relies on (the rest is kept verbatim)."""

    lineage_key: str
    files: Mapping[str, FileEntry]
    metrics: Mapping[str, float]
    raw: Mapping[str, Any] = field(repr=False)


@dataclass
class IntegrityFindings:
    """What the checks learned so far; later checks run only on what earlier ones proved.

    `tensors` is set only when every weight file's header parsed, so the tensor checks
    (here and in `core.model_check`) never judge a partial picture.
    """

    problems: list[str] = field(default_factory=list)
    manifest: Manifest | None = None
    manifest_sha256: str = ""
    weight_files: list[str] = field(default_factory=list)
    weight_map: dict[str, str] | None = None  # from the shard index, when sharded
    headers: dict[str, SafetensorsHeader] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] | None = None


# --------------------------------------------------------------------------- public API


def manifest_digest(store: ArtifactStore, prefix: str) -> str | None:
    """sha256 of MANIFEST.json, or None if absent — a cheap cache key for the flow.

    The manifest lists every file's sha256, so its own digest identifies the whole folder.
    """
    try:
        return hashlib.sha256(store.read_bytes(join(clean(prefix), MANIFEST_NAME))).hexdigest()
    except FileNotFoundError:
        return None


def check_integrity(
    store: ArtifactStore, prefix: str, listing: Mapping[str, int], expected_lineage_key: str
) -> IntegrityFindings:
    """Manifest, hashes, required files, weight files and their headers, all problems kept.

    `listing` is `store.list_files(prefix)`, passed in so the caller lists the folder once.
    """
    found = IntegrityFindings()
    _check_manifest(store, prefix, listing, expected_lineage_key, found)
    if found.manifest is not None:
        _check_listed_files(store, prefix, listing, found.manifest, found.problems)
    _check_required_files(listing, found.problems)
    _find_weight_files(store, prefix, listing, found)
    _read_weight_headers(store, prefix, listing, found)
    return found


# --------------------------------------------------------------------------- 1. manifest


def _check_manifest(
    store: ArtifactStore,
    prefix: str,
    listing: Mapping[str, int],
    expected_lineage_key: str,
    found: IntegrityFindings,
) -> None:
    """MANIFEST.json is written last, so its absence means the job never finished."""
    if MANIFEST_NAME not in listing:
        found.problems.append(MISSING_MANIFEST)
        return
    if listing[MANIFEST_NAME] > MAX_MANIFEST_BYTES:
        found.problems.append(
            f"MANIFEST.json is {listing[MANIFEST_NAME]} bytes: too large to be a manifest"
        )
        return
    try:
        raw = store.read_bytes(join(prefix, MANIFEST_NAME))
    except FileNotFoundError:
        found.problems.append(MISSING_MANIFEST)
        return
    found.manifest_sha256 = hashlib.sha256(raw).hexdigest()
    manifest, problems = parse_manifest(raw, expected_lineage_key)
    found.manifest = manifest
    found.problems.extend(problems)


def parse_manifest(raw: bytes, expected_lineage_key: str) -> tuple[Manifest | None, list[str]]:
    """Parse MANIFEST.json bytes; return what could be parsed plus every problem seen.

    A manifest with a wrong lineage key or a bad metric is still returned, so the file
    checks run and report their own problems too.
    """
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"MANIFEST.json is not valid JSON ({exc})"]
    if not isinstance(data, dict):
        return None, [f"MANIFEST.json is a JSON {type(data).__name__}, not an object"]

    problems: list[str] = []
    version = data.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
        problems.append(
            f"MANIFEST.json: format_version {version!r} is not supported (supported: {supported})"
        )
    key = data.get("lineage_key")
    if key != expected_lineage_key:
        problems.append(
            f"MANIFEST.json: lineage key {key!r} does not match the expected "
            f"{expected_lineage_key!r} (wrong folder, or a write from other inputs)"
        )
    files = _parse_file_entries(data.get("files"), problems)
    metrics = _parse_metrics(data.get("metrics"), problems)
    if files is None:
        return None, problems
    manifest = Manifest(lineage_key=str(key), files=files, metrics=metrics, raw=data)
    return manifest, problems


def _parse_file_entries(value: object, problems: list[str]) -> dict[str, FileEntry] | None:
    """`files` maps every relative name except MANIFEST.json to its size and sha256."""
    if not isinstance(value, dict):
        problems.append("MANIFEST.json: 'files' is missing or not an object")
        return None
    entries: dict[str, FileEntry] = {}
    for name, entry in value.items():
        if name == MANIFEST_NAME:
            problems.append("MANIFEST.json lists itself under 'files'")
        elif not _is_safe_name(name):
            problems.append(f"MANIFEST.json: unsafe file name {name!r}")
        elif not _is_file_entry(entry):
            problems.append(
                f"MANIFEST.json: entry for {name} must be {{'size': int, 'sha256': 64 hex}}"
            )
        else:
            entries[name] = FileEntry(size=entry["size"], sha256=entry["sha256"].lower())
    return entries


def _is_file_entry(entry: object) -> bool:
    """`{"size": non-negative int, "sha256": 64 hex digits}`; JSON true is not a size."""
    if not isinstance(entry, dict):
        return False
    size, digest = entry.get("size"), entry.get("sha256")
    return (
        isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
        and isinstance(digest, str)
        and len(digest) == 64
        and all(c in "0123456789abcdefABCDEF" for c in digest)
    )


def _parse_metrics(value: object, problems: list[str]) -> dict[str, float]:
    """Metrics feed the evaluation gate, so they must be plain numbers."""
    if not isinstance(value, dict):
        problems.append("MANIFEST.json: 'metrics' is missing or not an object")
        return {}
    metrics: dict[str, float] = {}
    for name, number in value.items():
        if isinstance(number, int | float) and not isinstance(number, bool):
            metrics[name] = float(number)
        else:
            problems.append(f"MANIFEST.json: metric {name!r} is not a number ({number!r})")
    return metrics


# --------------------------------------------------------------------------- 2. files


def _check_listed_files(
    store: ArtifactStore,
    prefix: str,
    listing: Mapping[str, int],
    manifest: Manifest,
    problems: list[str],
) -> None:
    """Every listed file exists with its size and sha256; nothing unlisted slipped in."""
    for name, entry in sorted(manifest.files.items()):
        actual_size = listing.get(name)
        if actual_size is None:
            problems.append(f"{name}: listed in MANIFEST.json but missing")
        elif actual_size != entry.size:
            problems.append(
                f"{name}: size mismatch (manifest {entry.size} bytes, actual {actual_size} bytes)"
            )
        else:
            actual = _sha256_of(store, join(prefix, name))
            if actual != entry.sha256:
                problems.append(
                    f"{name}: sha256 mismatch (manifest {entry.sha256[:HEX_SHOWN]}…, "
                    f"actual {actual[:HEX_SHOWN]}…)"
                )
    unlisted = sorted(set(listing) - set(manifest.files) - {MANIFEST_NAME})
    if unlisted:
        problems.append(f"files present but not listed in MANIFEST.json: {some(unlisted)}")


def _sha256_of(store: ArtifactStore, path: str) -> str:
    """Streamed, so multi-gigabyte weights never sit in memory whole."""
    digest = hashlib.sha256()
    for chunk in store.iter_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def _check_required_files(listing: Mapping[str, int], problems: list[str]) -> None:
    """What a server needs besides the weights (the weights are checked separately)."""
    for name in REQUIRED_NON_WEIGHT_FILES:
        if name not in listing:
            problems.append(f"required file {name} missing")


# --------------------------------------------------------------------------- 3. weights


def _find_weight_files(
    store: ArtifactStore, prefix: str, listing: Mapping[str, int], found: IntegrityFindings
) -> None:
    """Decide which safetensors files hold the full weights, or say why there are none."""
    adapters = [name for name in ADAPTER_FILES if name in listing]
    pickles = [name for name in PICKLE_WEIGHTS if name in listing]
    has_single, has_index = SINGLE_WEIGHTS in listing, WEIGHTS_INDEX in listing

    if pickles:
        found.problems.append(
            f"pickle weights ({', '.join(pickles)}): the model must be saved as safetensors"
        )
    if has_single and has_index:
        found.problems.append(
            f"both {SINGLE_WEIGHTS} and {WEIGHTS_INDEX} present: ambiguous full weights"
        )
    if not has_single and not has_index:
        detail = f"found {', '.join(adapters)}; " if adapters else ""
        found.problems.append(f"{ADAPTER_ONLY} ({detail}no {SINGLE_WEIGHTS} or {WEIGHTS_INDEX})")
        return
    if adapters:
        found.problems.append(
            f"adapter files next to the full weights ({', '.join(adapters)}): "
            "the merge step left its LoRA adapter behind"
        )
    if has_single:
        found.weight_files = [SINGLE_WEIGHTS]
        return
    found.weight_map = _read_weight_map(store, prefix, found.problems)
    if found.weight_map is None:
        return
    shards = sorted(set(found.weight_map.values()))
    missing = [shard for shard in shards if shard not in listing]
    if missing:
        found.problems.append(f"{WEIGHTS_INDEX} names shards that are missing: {some(missing)}")
    found.weight_files = [shard for shard in shards if shard in listing]


def _read_weight_map(
    store: ArtifactStore, prefix: str, problems: list[str]
) -> dict[str, str] | None:
    """The shard index's tensor → shard map, or None (with the reason) when it is unusable."""
    try:
        index = json.loads(store.read_bytes(join(prefix, WEIGHTS_INDEX)))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{WEIGHTS_INDEX} is not valid JSON ({exc})")
        return None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if (
        not isinstance(weight_map, dict)
        or not weight_map
        or not all(
            isinstance(shard, str) and _is_safe_name(shard) and shard.endswith(".safetensors")
            for shard in weight_map.values()
        )
    ):
        problems.append(f"{WEIGHTS_INDEX}: 'weight_map' must map tensor names to shard files")
        return None
    return weight_map


# --------------------------------------------------------------------------- 4. headers


def _read_weight_headers(
    store: ArtifactStore, prefix: str, listing: Mapping[str, int], found: IntegrityFindings
) -> None:
    """Parse every weight file's header; `found.tensors` is set only if all of them parse."""
    if not found.weight_files:
        return
    for name in found.weight_files:
        path = join(prefix, name)
        try:
            found.headers[name] = read_header(
                lambda start, length, p=path: store.read_bytes(p, start, length), listing[name]
            )
        except HeaderError as exc:
            found.problems.append(f"{name}: not a whole safetensors file: {exc}")
    if len(found.headers) != len(found.weight_files):
        return
    tensors = _merge_tensors(found.headers, found.problems)
    if found.weight_map is not None:
        _check_index_matches(found.weight_map, found.headers, found.problems)
    found.tensors = tensors


def _merge_tensors(
    headers: Mapping[str, SafetensorsHeader], problems: list[str]
) -> dict[str, TensorInfo]:
    """One name → tensor map across shards; a name stored twice is ambiguous."""
    tensors: dict[str, TensorInfo] = {}
    duplicated: list[str] = []
    for header in headers.values():
        for name, info in header.tensors.items():
            if name in tensors:
                duplicated.append(name)
            tensors[name] = info
    if duplicated:
        problems.append(f"tensors stored in more than one shard: {some(sorted(duplicated))}")
    return tensors


def _check_index_matches(
    weight_map: Mapping[str, str],
    headers: Mapping[str, SafetensorsHeader],
    problems: list[str],
) -> None:
    """The index is what loaders trust, so it must agree with the shards' own headers."""
    wrong = sorted(
        name
        for name, shard in weight_map.items()
        if shard in headers and name not in headers[shard].tensors
    )
    if wrong:
        problems.append(f"{WEIGHTS_INDEX} maps tensors to shards lacking them: {some(wrong)}")
    stray = sorted(
        name
        for shard, header in headers.items()
        for name in header.tensors
        if weight_map.get(name) != shard
    )
    if stray:
        problems.append(f"shard tensors missing from {WEIGHTS_INDEX}: {some(stray)}")


# --------------------------------------------------------------------------- 5. vs config fields


def config_field_problems(config_bytes: bytes, tensors: Mapping[str, TensorInfo]) -> list[str]:
    """The architecture check without torch: what config.json's own fields can prove.

    Catches unmerged LoRA tensors, a wrong vocabulary or hidden size (embedding shape), a
    dropped or extra decoder layer, and a dtype config.json does not declare. A field
    config.json omits is skipped (only transformers knows its default); per-layer names and
    shapes need the model built from config.json, so `core.model_check` does those.
    """
    try:
        data = json.loads(config_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"config.json is not valid JSON ({exc})"]
    if not isinstance(data, dict):
        return [f"config.json is a JSON {type(data).__name__}, not an object"]
    text = data["text_config"] if isinstance(data.get("text_config"), dict) else data
    problems = lora_problems(tensors)
    problems.extend(_embedding_and_layer_problems(text, tensors))
    dtype = data.get("dtype", data.get("torch_dtype"))
    problems.extend(dtype_problems(tensors.values(), safetensors_dtype(dtype)))
    return problems


def _embedding_and_layer_problems(
    text_config: Mapping[str, Any], tensors: Mapping[str, TensorInfo]
) -> list[str]:
    """Embedding is [vocab_size, hidden_size]; decoder layers are 0 … num_hidden_layers-1.

    Layers are counted under the embedding's own prefix (`model.` → `model.layers.N.`), so a
    vision tower's layers in a multimodal checkpoint are not mistaken for decoder layers.
    """
    embeddings = sorted(name for name in tensors if name.endswith(EMBEDDING_SUFFIX))
    if len(embeddings) != 1:
        found = some(embeddings) if embeddings else "none"
        return [f"expected one token embedding (*{EMBEDDING_SUFFIX}), found {found}"]
    (embedding,) = embeddings
    problems: list[str] = []
    vocab, hidden = text_config.get("vocab_size"), text_config.get("hidden_size")
    if _is_size(vocab) and _is_size(hidden) and tensors[embedding].shape != (vocab, hidden):
        problems.append(
            f"shape mismatch vs config.json: {embedding} (weights "
            f"{list(tensors[embedding].shape)}, config [{vocab}, {hidden}] = "
            "[vocab_size, hidden_size])"
        )
    layers = text_config.get("num_hidden_layers")
    if _is_size(layers):
        decoder = re.escape(embedding.removesuffix(EMBEDDING_SUFFIX))
        pattern = re.compile(decoder + r"layers\.(\d+)\.")
        held = sorted({int(m.group(1)) for name in tensors if (m := pattern.match(name))})
        if held != list(range(layers)):
            shown = some([str(index) for index in held]) if held else "none"
            problems.append(
                f"layer count mismatch vs config.json: num_hidden_layers is {layers}, "
                f"the weights hold layers {shown}"
            )
    return problems


def lora_problems(tensors: Iterable[str]) -> list[str]:
    """Tensor names a LoRA wrapper leaves behind mean the adapter was never merged."""
    lora = lora_names(tensors)
    if not lora:
        return []
    return [
        f"LoRA leftovers: {len(lora)} tensors named like an unmerged adapter "
        f"({some(lora)}); merge with merge_and_unload() before saving"
    ]


def lora_names(tensors: Iterable[str]) -> list[str]:
    """The sorted tensor names that carry a LoRA marker."""
    return sorted(name for name in tensors if any(marker in name for marker in LORA_MARKERS))


def safetensors_dtype(value: object) -> str | None:
    """config.json's dtype ("bfloat16", or torch.bfloat16) as a safetensors code.

    None when unset, 'auto' or not a float dtype: then there is nothing to compare.
    """
    name = str(value).removeprefix("torch.") if value is not None else ""
    return SAFETENSORS_DTYPE_BY_NAME.get(name)


def dtype_problems(tensors: Iterable[TensorInfo], config_dtype: str | None) -> list[str]:
    """A merged model has one floating dtype, and it is the one config.json declares."""
    counts: dict[str, int] = {}
    for info in tensors:
        if info.dtype in FLOAT_DTYPES:
            counts[info.dtype] = counts.get(info.dtype, 0) + 1
    if len(counts) > 1:
        listed = ", ".join(f"{dtype} ×{n}" for dtype, n in sorted(counts.items()))
        return [f"mixed floating-point dtypes in the weights: {listed}"]
    if counts and config_dtype is not None and config_dtype not in counts:
        (stored,) = counts
        return [f"dtype mismatch: weights are {stored} but config.json declares {config_dtype}"]
    return []


# --------------------------------------------------------------------------- helpers


def clean(prefix: str) -> str:
    """A store prefix without leading or trailing slashes, as the stores expect."""
    return prefix.strip("/")


def join(prefix: str, name: str) -> str:
    """`prefix/name`, or just `name` at the store's root."""
    return f"{prefix}/{name}" if prefix else name


def some(items: list[str], limit: int = NAMES_SHOWN) -> str:
    """The first few items, and how many more, so one message stays readable."""
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _is_safe_name(name: str) -> bool:
    """A relative POSIX name that cannot escape the model folder."""
    parts = name.split("/")
    return bool(name) and "\\" not in name and all(p not in ("", ".", "..") for p in parts)


def _is_size(value: object) -> bool:
    """A positive int that is not a bool: a config field worth comparing against."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
