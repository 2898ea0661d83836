# Orchestrator image: runs the pipeline flow for the `cloud-run` deployment (CPU only).
#
# The flow only calls Google's APIs and reads GCS objects — training runs in the GPU job's own
# image, serving in vLLM's — so this image has Prefect, prefect-gcp, the Google clients and the
# pipeline code, and no torch or transformers (weights are verified from their safetensors
# headers and sizes, which needs neither). `python -m deployments.deploy_gcp` assembles the
# build context (core/ tasks/ flows/ deployments/ job_image/ + pyproject.toml, prefect.yaml,
# README.md, and this file as `Dockerfile`), and its content hash is the image tag.
#
# Pins: prefect and prefect-gcp are exact in pyproject.toml; the Google clients have lower
# bounds only (no lock file for this image yet), so a rebuild after a code change may pick up
# newer client patch releases.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp/home \
    PREFECT_HOME=/tmp/prefect \
    TMPDIR=/tmp

# The deployment's pull step sets this directory; the flow reads job_image/ from it (the
# training image is built from that folder at run time).
WORKDIR /app
COPY . /app

# Only the gcp extra: no train/serve extras, so no torch. The check fails the build (not a
# run) if a dependency ever pulls a training library in.
RUN pip install "/app[gcp]" \
 && rm -rf /app/build /app/*.egg-info \
 && python -c "import importlib.util as u, sys; \
found = [m for m in ('torch', 'transformers', 'peft', 'trl') if u.find_spec(m)]; \
sys.exit(f'training libraries in the orchestrator image: {found}' if found else 0)" \
 && python -c "import flows.finetune, prefect_gcp.workers.cloud_run_v2"

RUN useradd --no-create-home --uid 10001 orchestrator
USER 10001
