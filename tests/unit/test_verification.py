"""Model-folder verification against real files: a tiny Gemma 3 checkpoint, broken on purpose.

Each broken case damages one thing the way a failed or buggy training job would, keeps the
manifest consistent where the case says so (so only the intended check can catch it), and
asserts the specific sentence an operator would read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Gemma3ForCausalLM

from core.contracts import ArtifactStore, VerificationFailed
from core.integrity import (
    ADAPTER_ONLY,
    MISSING_MANIFEST,
    REQUIRED_NON_WEIGHT_FILES,
    SINGLE_WEIGHTS,
    config_field_problems,
)
from core.safetensors_header import HeaderError, TensorInfo, read_header
from core.verification import MANIFEST_NAME, VerifiedModel, manifest_digest, verify_model
from demo.tiny_model import ModelShape, build_tokenizer, generation_config, model_config
from tasks.backends.local.provision import LocalProvisioner
from tasks.backends.local.store import LocalFolderStore
from tests.conftest import REPO_ROOT
from tests.fakes.remote_store import RemoteLikeStore
from tests.train.job_modules import job_module

KEY = "0123456789abcdef"
PROMPT = "Translate to emoji: I ate a banana for breakfast"
PREFIX = f"models/{KEY}"
METRICS = {
    "eval_loss": 0.1,
    "emoji_only_rate": 0.9,
    "exact_match": 0.3,
    "eval_examples": 16,
    "train_loss": 0.2,
}
SHAPE = ModelShape(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    max_position_embeddings=128,
    sliding_window=32,
)
CORPUS = [
    "user\nTranslate to emoji: I ate a banana for breakfast",
    "model\n🍌🥣",
    "user\nTranslate to emoji: later I'm thinking of having soup!",
    "model\n🍲🤔",
]


# --------------------------------------------------------------------------- fixtures


def write_manifest(folder: Path, lineage_key: str = KEY) -> None:
    """What the training job writes last: size + sha256 of every other file."""
    files = {
        path.relative_to(folder).as_posix(): {
            "size": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest = {
        "format_version": 1,
        "lineage_key": lineage_key,
        "lineage": {"base_model": "tiny-gemma3"},
        "files": files,
        "metrics": METRICS,
        "training": {"method": "test"},
        "created_at": "2026-11-28T00:00:00Z",
        "completed_at": "2026-11-28T00:01:00Z",
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny merged checkpoint, saved whole and sharded (built once: ~1 s)."""
    root = tmp_path_factory.mktemp("checkpoints")
    tokenizer = build_tokenizer(CORPUS, vocab_size=SHAPE.vocab_size)
    config = model_config(tokenizer, SHAPE)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    model.generation_config = generation_config(config)
    folders = {"single": root / "single", "sharded": root / "sharded"}
    model.save_pretrained(folders["single"])
    model.save_pretrained(folders["sharded"], max_shard_size="20KB")
    for folder in folders.values():
        tokenizer.save_pretrained(folder)
        write_manifest(folder)
    return folders


@pytest.fixture
def store(tmp_path: Path) -> LocalFolderStore:
    store = LocalFolderStore(tmp_path / "store")
    LocalProvisioner(store).ensure(on_log=lambda _: None)
    return store


@pytest.fixture
def model_dir(store: LocalFolderStore, checkpoints: dict[str, Path]) -> Path:
    """A fresh copy of the good single-file checkpoint at `models/<KEY>/`, free to damage."""
    folder = store.path(PREFIX)
    shutil.copytree(checkpoints["single"], folder)
    return folder


def problems(store: ArtifactStore, **kwargs: object) -> list[str]:
    """Run verification expecting failure; return the problems it listed."""
    with pytest.raises(VerificationFailed) as caught:
        verify_model(
            store,
            PREFIX,
            expected_lineage_key=KEY,
            generation_prompt=PROMPT,
            **kwargs,  # type: ignore[arg-type]
        )
    assert caught.value.location == store.uri_for(PREFIX)
    return caught.value.problems


def edit_weights(folder: Path, edit: dict[str, torch.Tensor | None]) -> None:
    """Rewrite model.safetensors with tensors replaced/added (None removes one)."""
    path = folder / "model.safetensors"
    tensors = load_file(path)
    for name, value in edit.items():
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value
    save_file(tensors, path, metadata={"format": "pt"})


# --------------------------------------------------------------------------- passing cases


def test_good_folder_passes_with_a_sample_answer(store: LocalFolderStore, model_dir: Path) -> None:
    verified = verify_model(store, PREFIX, expected_lineage_key=KEY, generation_prompt=PROMPT)

    assert isinstance(verified, VerifiedModel)
    assert verified.lineage_key == KEY
    assert verified.prefix == PREFIX
    assert verified.uri == store.uri_for(PREFIX)
    assert verified.manifest_sha256 == manifest_digest(store, PREFIX)
    assert verified.metrics == pytest.approx(METRICS)
    assert verified.total_bytes == sum(p.stat().st_size for p in model_dir.iterdir())
    stored = load_file(model_dir / "model.safetensors")
    assert verified.tensor_count == len(stored) == 28  # lm_head.weight is tied, not stored
    assert verified.parameter_count == sum(t.numel() for t in stored.values())
    assert isinstance(verified.sample_answer, str) and verified.sample_answer.strip()


def test_sharded_checkpoint_passes(store: LocalFolderStore, checkpoints: dict[str, Path]) -> None:
    shutil.copytree(checkpoints["sharded"], store.path(PREFIX))
    assert len(list(store.path(PREFIX).glob("model-*-of-*.safetensors"))) > 1
    verified = verify_model(
        store, PREFIX, expected_lineage_key=KEY, check_generation=False, generation_prompt=PROMPT
    )
    assert verified.tensor_count == 28
    assert verified.sample_answer is None


def test_protocol_only_store_verifies_without_local_files(
    store: LocalFolderStore, model_dir: Path
) -> None:
    verified = verify_model(
        RemoteLikeStore(store), PREFIX, expected_lineage_key=KEY, generation_prompt=PROMPT
    )
    assert verified.uri == f"gs://test-bucket/{PREFIX}"
    assert verified.sample_answer is None  # generation needs local files


# --------------------------------------------------------------------------- broken cases


def test_missing_shard(store: LocalFolderStore, checkpoints: dict[str, Path]) -> None:
    folder = store.path(PREFIX)
    shutil.copytree(checkpoints["sharded"], folder)
    shard = sorted(folder.glob("model-*-of-*.safetensors"))[-1]
    shard.unlink()
    write_manifest(folder)
    found = problems(store)
    assert f"model.safetensors.index.json names shards that are missing: {shard.name}" in found
    assert any(p.startswith("missing tensors required by config.json: ") for p in found)


def test_missing_manifest(store: LocalFolderStore, model_dir: Path) -> None:
    (model_dir / MANIFEST_NAME).unlink()
    assert MISSING_MANIFEST in problems(store)
    assert manifest_digest(store, PREFIX) is None


def test_empty_prefix(store: LocalFolderStore) -> None:
    found = problems(store)
    assert found[0].startswith("no files under")
    assert MISSING_MANIFEST in found


def test_wrong_lineage_key(store: LocalFolderStore, model_dir: Path) -> None:
    write_manifest(model_dir, lineage_key="fedcba9876543210")
    found = problems(store)
    assert len(found) == 1
    assert "lineage key 'fedcba9876543210' does not match the expected" in found[0]


def test_missing_file(store: LocalFolderStore, model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink()
    found = problems(store)
    assert "tokenizer.json: listed in MANIFEST.json but missing" in found
    assert "required file tokenizer.json missing" in found


def test_wrong_checksum(store: LocalFolderStore, model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4] ^= 0x01  # lowest mantissa bit of the last float: same size, still finite
    weights.write_bytes(bytes(data))
    found = problems(store)
    assert len(found) == 1
    assert found[0].startswith("model.safetensors: sha256 mismatch (manifest ")


def test_truncated_weights_caught_by_header_even_with_matching_manifest(
    store: LocalFolderStore, model_dir: Path
) -> None:
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    write_manifest(model_dir)
    for target in (store, RemoteLikeStore(store)):
        found = problems(target)
        assert len(found) == 1
        assert found[0].startswith("model.safetensors: not a whole safetensors file: truncated")


def test_nan_tensor(store: LocalFolderStore, model_dir: Path) -> None:
    name = "model.layers.0.mlp.down_proj.weight"
    poisoned = load_file(model_dir / "model.safetensors")[name].clone()
    poisoned[3, 5] = float("nan")
    edit_weights(model_dir, {name: poisoned})
    write_manifest(model_dir)
    assert problems(store) == [f"non-finite values (NaN/Inf) in tensors: {name}"]


def test_adapter_only_output(store: LocalFolderStore, model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()
    (model_dir / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    lora = "base_model.model.model.layers.0.self_attn.q_proj.lora_{}.weight"
    save_file(
        {lora.format("A"): torch.zeros(4, 32), lora.format("B"): torch.zeros(32, 4)},
        model_dir / "adapter_model.safetensors",
    )
    write_manifest(model_dir)
    found = problems(store)
    assert len(found) == 1
    assert found[0].startswith(ADAPTER_ONLY)
    assert "adapter_config.json, adapter_model.safetensors" in found[0]


def test_lora_names_inside_merged_weights(store: LocalFolderStore, model_dir: Path) -> None:
    base = "model.layers.0.self_attn.q_proj"
    q_proj = load_file(model_dir / "model.safetensors")[f"{base}.weight"]
    edit_weights(
        model_dir,
        {
            f"{base}.weight": None,
            f"{base}.base_layer.weight": q_proj,
            f"{base}.lora_A.default.weight": torch.zeros(4, 32),
            f"{base}.lora_B.default.weight": torch.zeros(32, 4),
        },
    )
    write_manifest(model_dir)
    found = problems(store)
    assert any(p.startswith("LoRA leftovers: 3 tensors") for p in found)
    assert f"missing tensors required by config.json: {base}.weight" in found
    assert not any(p.startswith("unexpected tensors") for p in found)  # not double-reported


def test_shape_mismatch_against_config(store: LocalFolderStore, model_dir: Path) -> None:
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["intermediate_size"] = 48
    config_path.write_text(json.dumps(config))
    write_manifest(model_dir)
    found = problems(store)
    assert len(found) == 1
    assert found[0].startswith("shape mismatch vs config.json: model.layers.0.mlp.down_proj.weight")
    assert "(weights [32, 64], config [32, 48])" in found[0]


def test_dtype_disagrees_with_config(store: LocalFolderStore, model_dir: Path) -> None:
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "bfloat16"
    config_path.write_text(json.dumps(config))
    write_manifest(model_dir)
    found = problems(store)
    assert found == ["dtype mismatch: weights are F32 but config.json declares BF16"]


def test_every_problem_is_listed(store: LocalFolderStore, model_dir: Path) -> None:
    write_manifest(model_dir, lineage_key="another-key")
    (model_dir / "notes.txt").write_text("left behind")
    (model_dir / "chat_template.jinja").write_text("{{ oops }}")
    found = problems(store)
    assert len(found) == 3, found
    assert any("lineage key 'another-key'" in p for p in found)
    assert "files present but not listed in MANIFEST.json: notes.txt" in found
    assert any(p.startswith("chat_template.jinja: size mismatch (manifest ") for p in found)


# --------------------------------------------------------------------------- without torch

# Run in a fresh interpreter where `import torch` / `import transformers` raise ImportError, as
# in the gcp orchestrator's image; prints {prefix: outcome} as JSON.
TORCH_FREE_VERIFY = """
import json, sys
sys.modules["torch"] = None
sys.modules["transformers"] = None
from pathlib import Path
from core.contracts import VerificationFailed
from core.verification import verify_model
from tasks.backends.local.store import LocalFolderStore
from tests.fakes.remote_store import RemoteLikeStore

root, key, *prefixes = sys.argv[1:]
store = RemoteLikeStore(LocalFolderStore(Path(root)))
outcomes = {}
for prefix in prefixes:
    try:
        verified = verify_model(store, prefix, expected_lineage_key=key, generation_prompt="-")
        outcomes[prefix] = {"tensors": verified.tensor_count, "sample": verified.sample_answer}
    except VerificationFailed as exc:
        outcomes[prefix] = {"problems": exc.problems}
print(json.dumps(outcomes))
"""


def stored_tensors(folder: Path) -> dict[str, TensorInfo]:
    """The tensors model.safetensors' header describes (what verification compares)."""
    blob = (folder / SINGLE_WEIGHTS).read_bytes()
    return dict(read_header(lambda start, length: blob[start : start + length], len(blob)).tensors)


def test_remote_store_verifies_where_torch_cannot_be_imported(
    store: LocalFolderStore, checkpoints: dict[str, Path]
) -> None:
    for case in ("good", "layers", "truncated"):
        shutil.copytree(checkpoints["single"], store.path(f"models/{case}"))
    config_path = store.path("models/layers/config.json")
    config = json.loads(config_path.read_text())
    config["num_hidden_layers"] = 3
    config_path.write_text(json.dumps(config))
    weights = store.path(f"models/truncated/{SINGLE_WEIGHTS}")
    weights.write_bytes(weights.read_bytes()[:-64])
    for case in ("layers", "truncated"):
        write_manifest(store.path(f"models/{case}"))
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    run = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_VERIFY, str(store.root), KEY]
        + [f"models/{case}" for case in ("good", "layers", "truncated")],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    outcomes = json.loads(run.stdout)
    assert outcomes["models/good"] == {"tensors": 28, "sample": None}
    assert outcomes["models/layers"] == {
        "problems": [
            "layer count mismatch vs config.json: num_hidden_layers is 3, "
            "the weights hold layers 0, 1"
        ]
    }
    (truncated,) = outcomes["models/truncated"]["problems"]
    assert truncated.startswith("model.safetensors: not a whole safetensors file: truncated")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "vocab_size",
            301,
            "shape mismatch vs config.json: model.embed_tokens.weight (weights [300, 32], "
            "config [301, 32] = [vocab_size, hidden_size])",
        ),
        (
            "num_hidden_layers",
            1,
            "layer count mismatch vs config.json: num_hidden_layers is 1, "
            "the weights hold layers 0, 1",
        ),
        ("dtype", "bfloat16", "dtype mismatch: weights are F32 but config.json declares BF16"),
    ],
)
def test_torch_free_config_checks(
    checkpoints: dict[str, Path], field: str, value: object, expected: str
) -> None:
    tensors = stored_tensors(checkpoints["single"])
    config = json.loads((checkpoints["single"] / "config.json").read_text())
    assert config_field_problems(json.dumps(config).encode(), tensors) == []
    config[field] = value
    assert config_field_problems(json.dumps(config).encode(), tensors) == [expected]


def test_torch_free_config_checks_catch_lora_leftovers(checkpoints: dict[str, Path]) -> None:
    tensors = stored_tensors(checkpoints["single"])
    name = "model.layers.0.self_attn.q_proj.lora_A.default.weight"
    tensors[name] = TensorInfo(name, "F32", (4, 32), 0, 512)
    config_bytes = (checkpoints["single"] / "config.json").read_bytes()
    (found,) = config_field_problems(config_bytes, tensors)
    assert found.startswith(f"LoRA leftovers: 1 tensors named like an unmerged adapter ({name})")


def test_required_files_match_what_the_training_job_publishes() -> None:
    """The job stays standalone with its own list; both must name the same files."""
    job_required = job_module("model_folder").REQUIRED_FILES
    assert set(job_required) == {*REQUIRED_NON_WEIGHT_FILES, SINGLE_WEIGHTS}


# --------------------------------------------------------------------------- header parser


def _safetensors_bytes(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x01\x02", "too small"),
        (struct.pack("<Q", 1 << 40) + b"{}", "absurd"),
        (struct.pack("<Q", 50) + b"{}", "runs past the end"),
        (struct.pack("<Q", 2) + b"[]", "not an object"),
        (struct.pack("<Q", 3) + b"{x}", "not valid UTF-8 JSON"),
        (
            _safetensors_bytes(
                {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4
            ),
            "needs 8 bytes but its offsets span 4",
        ),
        (
            _safetensors_bytes(
                {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8
            ),
            "leaves a gap",
        ),
        (
            _safetensors_bytes(
                {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 6
            ),
            "2 unexplained bytes",
        ),
        (
            _safetensors_bytes({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b""),
            "unknown dtype",
        ),
    ],
)
def test_header_parser_rejects(blob: bytes, message: str) -> None:
    with pytest.raises(HeaderError, match=message):
        read_header(lambda start, length: blob[start : start + length], len(blob))


def test_header_parser_accepts_a_real_file(checkpoints: dict[str, Path]) -> None:
    blob = (checkpoints["single"] / "model.safetensors").read_bytes()
    header = read_header(lambda start, length: blob[start : start + length], len(blob))
    assert header.tensors["model.norm.weight"].shape == (32,)
    assert header.metadata == {"format": "pt"}
