"""Verify a trained model folder before anything serves it.

A folder under `models/<lineage-key>/` is only served when it proves it is complete, intact
and really the merged model the lineage promises. Every check here goes through the
`ArtifactStore` protocol (listing, ranged reads, streamed hashing), so the same code judges a
local folder and a GCS prefix; only the checks that must load tensors (finiteness, a short
generation) need `local_dir`. All problems are collected and raised together, so an operator
fixes a broken training job in one round trip instead of one error at a time.

torch and transformers are imported lazily: `manifest_digest` (the flow's cache key) and the
integrity checks must stay cheap to import.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.contracts import ArtifactStore, VerificationFailed
from core.safetensors_header import (
    FLOAT_DTYPES,
    HeaderError,
    SafetensorsHeader,
    TensorInfo,
    read_header,
)

if TYPE_CHECKING:
    import torch

MANIFEST_NAME = "MANIFEST.json"
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
MAX_MANIFEST_BYTES = 16 << 20
CONFIG_NAME = "config.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
REQUIRED_FILES = (CONFIG_NAME, "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
LORA_MARKERS = ("lora_", ".base_layer.")

MISSING_MANIFEST = (
    "MANIFEST.json missing: the training job did not finish (incomplete folder is never served)"
)
ADAPTER_ONLY = "adapter-only output: the LoRA adapter was not merged"
DEFAULT_PROMPT = (
    "Translate to emoji: I ate a banana for breakfast, later I'm thinking of having soup!"
)
MAX_NEW_TOKENS = 16
FINITE_CHUNK_ELEMENTS = 1 << 22  # 16 MiB of float32 per chunk keeps memory flat
# Float dtypes torch can hold; packed FP4/FP6 are left to the header checks.
FINITE_CHECKED_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"})
NAMES_SHOWN = 5
HEX_SHOWN = 12

_TORCH_TO_SAFETENSORS = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class VerifiedModel:
    """A model folder that passed every check; small and picklable (a Prefect task result)."""

    prefix: str
    uri: str
    lineage_key: str
    manifest_sha256: str
    metrics: Mapping[str, float]
    total_bytes: int
    tensor_count: int
    parameter_count: int
    sample_answer: str | None  # from the load-and-generate check (None when not run)


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
class _Findings:
    """What the checks learned so far; later checks run only on what earlier ones proved."""

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
        return hashlib.sha256(store.read_bytes(_join(_clean(prefix), MANIFEST_NAME))).hexdigest()
    except FileNotFoundError:
        return None


def verify_model(
    store: ArtifactStore,
    prefix: str,
    *,
    expected_lineage_key: str,
    check_generation: bool = True,
    generation_prompt: str = DEFAULT_PROMPT,
) -> VerifiedModel:
    """Run every check on `prefix` and return what was proven.

    Raise VerificationFailed(store.uri_for(prefix), problems) listing EVERY problem found
    (not just the first) when any check fails.
    """
    prefix = _clean(prefix)
    location = store.uri_for(prefix)
    listing = store.list_files(prefix)
    if not listing:
        raise VerificationFailed(location, [f"no files under {location}", MISSING_MANIFEST])

    found = _Findings()
    _check_manifest(store, prefix, listing, expected_lineage_key, found)
    if found.manifest is not None:
        _check_listed_files(store, prefix, listing, found.manifest, found.problems)
    _check_required_files(listing, found.problems)
    _find_weight_files(store, prefix, listing, found)
    _read_weight_headers(store, prefix, listing, found)
    if found.tensors is not None and CONFIG_NAME in listing:
        _check_against_config(store.read_bytes(_join(prefix, CONFIG_NAME)), found)

    folder = store.local_dir(prefix)
    if folder is not None and found.tensors is not None:
        _check_finite(folder, found.weight_files, found.problems)
    sample: str | None = None
    if check_generation and folder is not None and not found.problems:
        sample = _generate_sample(folder, generation_prompt, found.problems)

    if found.problems or found.manifest is None or found.tensors is None:
        raise VerificationFailed(location, found.problems or ["verification incomplete"])
    return VerifiedModel(
        prefix=prefix,
        uri=location,
        lineage_key=found.manifest.lineage_key,
        manifest_sha256=found.manifest_sha256,
        metrics=dict(found.manifest.metrics),
        total_bytes=sum(listing.values()),
        tensor_count=len(found.tensors),
        parameter_count=sum(info.numel for info in found.tensors.values()),
        sample_answer=sample,
    )


# --------------------------------------------------------------------------- 1. manifest


def _check_manifest(
    store: ArtifactStore,
    prefix: str,
    listing: Mapping[str, int],
    expected_lineage_key: str,
    found: _Findings,
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
        raw = store.read_bytes(_join(prefix, MANIFEST_NAME))
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
            actual = _sha256_of(store, _join(prefix, name))
            if actual != entry.sha256:
                problems.append(
                    f"{name}: sha256 mismatch (manifest {entry.sha256[:HEX_SHOWN]}…, "
                    f"actual {actual[:HEX_SHOWN]}…)"
                )
    unlisted = sorted(set(listing) - set(manifest.files) - {MANIFEST_NAME})
    if unlisted:
        problems.append(f"files present but not listed in MANIFEST.json: {_some(unlisted)}")


def _sha256_of(store: ArtifactStore, path: str) -> str:
    """Streamed, so multi-gigabyte weights never sit in memory whole."""
    digest = hashlib.sha256()
    for chunk in store.iter_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def _check_required_files(listing: Mapping[str, int], problems: list[str]) -> None:
    """What a server needs besides the weights (the weights are checked separately)."""
    for name in REQUIRED_FILES:
        if name not in listing:
            problems.append(f"required file {name} missing")


# --------------------------------------------------------------------------- 3. weights


def _find_weight_files(
    store: ArtifactStore, prefix: str, listing: Mapping[str, int], found: _Findings
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
        found.problems.append(f"{WEIGHTS_INDEX} names shards that are missing: {_some(missing)}")
    found.weight_files = [shard for shard in shards if shard in listing]


def _read_weight_map(
    store: ArtifactStore, prefix: str, problems: list[str]
) -> dict[str, str] | None:
    try:
        index = json.loads(store.read_bytes(_join(prefix, WEIGHTS_INDEX)))
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
    store: ArtifactStore, prefix: str, listing: Mapping[str, int], found: _Findings
) -> None:
    """Parse every weight file's header; `found.tensors` is set only if all of them parse."""
    if not found.weight_files:
        return
    for name in found.weight_files:
        path = _join(prefix, name)
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
        problems.append(f"tensors stored in more than one shard: {_some(sorted(duplicated))}")
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
        problems.append(f"{WEIGHTS_INDEX} maps tensors to shards lacking them: {_some(wrong)}")
    stray = sorted(
        name
        for shard, header in headers.items()
        for name in header.tensors
        if weight_map.get(name) != shard
    )
    if stray:
        problems.append(f"shard tensors missing from {WEIGHTS_INDEX}: {_some(stray)}")


# --------------------------------------------------------------------------- 5. vs config


@dataclass(frozen=True)
class ExpectedWeights:
    """Parameter names and shapes the architecture in config.json defines."""

    architecture: str
    shapes: Mapping[str, tuple[int, ...]]
    optional: frozenset[str]  # tied weights a checkpoint may omit
    dtype: str | None  # safetensors dtype code config.json declares, if any


def _check_against_config(config_bytes: bytes, found: _Findings) -> None:
    """Names, shapes and dtypes must be exactly what the architecture in config.json loads.

    A merge that kept LoRA wrappers, dropped a layer or saved the wrong model class passes
    every checksum; only a comparison with the architecture catches it.
    """
    assert found.tensors is not None
    try:
        expected = expected_weights(config_bytes)
    except Exception as exc:  # any failure here means transformers cannot load the model
        found.problems.append(
            f"config.json: cannot build the architecture ({type(exc).__name__}: {exc})"
        )
        return
    found.problems.extend(compare_tensors(found.tensors, expected))


def expected_weights(config_bytes: bytes) -> ExpectedWeights:
    """Instantiate the architecture on the meta device: exact names and shapes, no memory.

    config.json goes through a temporary folder so a remote store needs to download just
    those few bytes.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with tempfile.TemporaryDirectory(prefix="verify-config-") as tmp:
        Path(tmp, CONFIG_NAME).write_bytes(config_bytes)
        config = AutoConfig.from_pretrained(tmp)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    return ExpectedWeights(
        architecture=type(model).__name__,
        shapes=shapes,
        optional=_tied_names(model, config),
        dtype=_config_dtype(config),
    )


def _tied_names(model: torch.nn.Module, config: Any) -> frozenset[str]:
    """Weights that alias another one (lm_head.weight → embed_tokens) and may be omitted.

    transformers 5 exposes `all_tied_weights_keys` ({tied: source}, already empty when the
    config unties embeddings); older versions only have the class-level `_tied_weights_keys`.
    """
    tied = getattr(model, "all_tied_weights_keys", None)
    if tied is None:
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        if not getattr(text_config, "tie_word_embeddings", False):
            return frozenset()
        tied = getattr(model, "_tied_weights_keys", None) or ()
    return frozenset(tied)


def _config_dtype(config: Any) -> str | None:
    """config.json's dtype as a safetensors code, None when unset or 'auto'."""
    value = getattr(config, "dtype", None)
    if value is None:
        value = config.to_dict().get("torch_dtype")
    name = str(value).removeprefix("torch.") if value is not None else ""
    return _TORCH_TO_SAFETENSORS.get(name)


def compare_tensors(tensors: Mapping[str, TensorInfo], expected: ExpectedWeights) -> list[str]:
    """Every difference between the stored tensors and what the architecture expects."""
    problems: list[str] = []
    lora = sorted(n for n in tensors if any(marker in n for marker in LORA_MARKERS))
    if lora:
        problems.append(
            f"LoRA leftovers: {len(lora)} tensors named like an unmerged adapter "
            f"({_some(lora)}); merge with merge_and_unload() before saving"
        )
    unexpected = sorted(set(tensors) - set(expected.shapes) - set(lora))
    if unexpected:
        problems.append(
            f"unexpected tensors not in {expected.architecture} per config.json: "
            f"{_some(unexpected)}"
        )
    missing = sorted(set(expected.shapes) - set(tensors) - expected.optional)
    if missing:
        problems.append(f"missing tensors required by config.json: {_some(missing)}")
    mismatched = [
        f"{name} (weights {list(info.shape)}, config {list(expected.shapes[name])})"
        for name, info in sorted(tensors.items())
        if name in expected.shapes and info.shape != expected.shapes[name]
    ]
    if mismatched:
        problems.append(f"shape mismatch vs config.json: {_some(mismatched)}")
    problems.extend(_dtype_problems(tensors.values(), expected.dtype))
    return problems


def _dtype_problems(tensors: Iterable[TensorInfo], config_dtype: str | None) -> list[str]:
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


# --------------------------------------------------------------------------- 6. finite


def _check_finite(folder: Path, weight_files: Iterable[str], problems: list[str]) -> None:
    """NaN/Inf weights load fine and serve garbage; this needs the bytes, so local only."""
    from safetensors import safe_open

    bad: list[str] = []
    for file_name in weight_files:
        try:
            with safe_open(str(folder / file_name), framework="pt") as handle:
                bad.extend(
                    name
                    for name in handle.keys()  # noqa: SIM118 (safe_open is not a Mapping)
                    if not _tensor_is_finite(handle, name)
                )
        except Exception as exc:  # safetensors raises its own error types
            problems.append(f"{file_name}: cannot read tensors ({type(exc).__name__}: {exc})")
    if bad:
        problems.append(f"non-finite values (NaN/Inf) in tensors: {_some(sorted(bad))}")


def _tensor_is_finite(handle: Any, name: str) -> bool:
    """Check one tensor in row chunks, so a huge embedding never loads whole."""
    tensor_slice = handle.get_slice(name)
    if tensor_slice.get_dtype() not in FINITE_CHECKED_DTYPES:
        return True
    shape = tensor_slice.get_shape()
    if not shape:
        return _all_finite(handle.get_tensor(name))
    rows = max(1, FINITE_CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))
    return all(
        _all_finite(tensor_slice[start : start + rows]) for start in range(0, shape[0], rows)
    )


def _all_finite(tensor: torch.Tensor) -> bool:
    """isfinite has no kernel for the 8-bit floats, so those are widened (one chunk only)."""
    if tensor.element_size() < 2:
        tensor = tensor.float()
    return bool(tensor.isfinite().all())


# --------------------------------------------------------------------------- 7. generate


def _generate_sample(folder: Path, prompt: str, problems: list[str]) -> str | None:
    """Load exactly as a server would and answer one prompt: the last word on servability."""
    try:
        answer = generate_sample(folder, prompt)
    except Exception as exc:  # any failure to load or generate means it cannot be served
        problems.append(f"load-and-generate check failed ({type(exc).__name__}: {exc})")
        return None
    if not answer.strip():
        problems.append(f"load-and-generate check: empty answer to {prompt!r}")
    return answer


def generate_sample(folder: Path, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """Greedy, float32 on CPU, through the chat template: deterministic and GPU-free."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new_tokens, skip_special_tokens=True)


# --------------------------------------------------------------------------- helpers


def _clean(prefix: str) -> str:
    return prefix.strip("/")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _is_safe_name(name: str) -> bool:
    """A relative POSIX name that cannot escape the model folder."""
    parts = name.split("/")
    return bool(name) and "\\" not in name and all(p not in ("", ".", "..") for p in parts)


def _some(items: list[str], limit: int = NAMES_SHOWN) -> str:
    """The first few items, and how many more, so one message stays readable."""
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
