"""Pin the exact revision of the base model and the dataset before training.

A hub id without a revision means "whatever `main` is today", which would make the lineage
key lie; so a hub id is resolved to its commit sha, and a local file or folder is addressed by
the hash of its content.
"""

from __future__ import annotations

from pathlib import Path

from core.contracts import ConfigurationError
from core.hashing import sha256_file, sha256_tree

DATA_SUFFIXES = (".jsonl", ".json", ".csv")
HUB_TIMEOUT_S = 10  # one metadata request; a hub that needs longer is as good as down


def looks_like_path(value: str) -> bool:
    """Hub ids are `owner/name`; anything absolute, relative-dotted or with a suffix is a path
    (a `gs://` object is neither: its revision is the object's generation)."""
    if value.startswith("gs://"):
        return False
    return (
        value.startswith(("/", "./", "../", "~"))
        or value.endswith(DATA_SUFFIXES)
        or Path(value).expanduser().exists()
    )


def check_model_source(base_model: str) -> None:
    """A local base model must be a folder written by `save_pretrained`."""
    folder = Path(base_model).expanduser()
    if looks_like_path(base_model) and not (folder / "config.json").is_file():
        raise ConfigurationError(
            f"model.base_model: {base_model!r} is not a model folder (no config.json); "
            "pass a Hugging Face model id or a folder written by save_pretrained"
        )


def check_dataset_source(dataset: str) -> None:
    """A local dataset must be an existing file."""
    if looks_like_path(dataset) and not Path(dataset).expanduser().is_file():
        raise ConfigurationError(
            f"data.dataset: file {dataset!r} not found; pass a .jsonl/.csv with columns "
            "text, emoji, topic, or a Hugging Face dataset id"
        )


def resolve_model_revision(base_model: str, revision: str | None) -> str:
    """`sha256:<tree hash>` for a local folder, the pinned or resolved commit for a hub id."""
    check_model_source(base_model)
    if looks_like_path(base_model):
        return "sha256:" + sha256_tree(Path(base_model).expanduser())
    return revision or _hub_sha(base_model, "model", "model.base_model", "model.revision")


def resolve_dataset_revision(dataset: str, revision: str | None) -> str:
    """`sha256:<file hash>` for a local file, the pinned or resolved commit for a hub id."""
    check_dataset_source(dataset)
    if looks_like_path(dataset):
        return "sha256:" + sha256_file(Path(dataset).expanduser())
    return revision or _hub_sha(dataset, "dataset", "data.dataset", "data.revision")


def _hub_sha(repo_id: str, repo_type: str, id_setting: str, setting: str) -> str:
    """Ask the hub for the current commit of `repo_id` (needs network and, maybe, a token).

    Any failure is the operator's to fix (offline, a typo in the id, no access), so it is one
    line naming the setting, never the client library's traceback.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    variable = "PIPELINE_" + setting.upper().replace(".", "__")
    try:
        info = HfApi().repo_info(repo_id, repo_type=repo_type, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise ConfigurationError(
            f"{setting}: {repo_type} {repo_id!r} is gated: accept its licence on the hub and "
            "export HF_TOKEN of that account"
        ) from None
    except RepositoryNotFoundError:
        raise ConfigurationError(
            f"{id_setting}: {repo_type} {repo_id!r} not found on the hub (a typo, "
            "or private: export HF_TOKEN); pass a hub id or a local path"
        ) from None
    except Exception as error:  # offline, DNS, TLS, 5xx: all end the same way for the operator
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise ConfigurationError(
            f"{setting}: cannot resolve the current revision of {repo_type} {repo_id!r} "
            f"({reason}); pin it with {variable}=<commit sha>, or use a local path"
        ) from None
    if not info.sha:
        raise ConfigurationError(f"{setting}: the hub returned no revision for {repo_id!r}")
    return info.sha
