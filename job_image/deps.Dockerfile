# Dependencies image of the training job: the Python base and ~4.3 GB of pinned wheels, and
# nothing else. The builder tags it with the hash of requirements.txt + this file only, so a
# change to job_image/*.py never rebuilds it; job_image/Dockerfile starts FROM it by digest.
# Its build context holds exactly these two files.
#
# Size (estimated from the wheels; no image is built on the development machines, which have
# no container engine): ~4.3 GB of wheels, ~3.0 GB of them the CUDA 12.8 libraries torch pins
# (cuDNN 707 MB, cuBLAS 594 MB, cuSPARSE 367 MB, cuSOLVER 338 MB, NCCL 323 MB,
# cuSPARSELt 287 MB, cuFFT 193 MB, …) plus torch itself (~0.9 GB) and triton (~170 MB);
# unpacked, ~8-9 GB including the ~130 MB python:3.11-slim base.
#
# A slim Python base is enough: the CUDA runtime libraries come with the torch wheel's
# nvidia-* dependencies and the driver (libcuda) is provided by the GPU host.
FROM python:3.11-slim-bookworm

# Every cache and scratch path is on the container's ephemeral disk (/tmp), never in the
# image or the mounted model store; the non-root user only needs to write there.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp/home \
    HF_HOME=/tmp/hf \
    XDG_CACHE_HOME=/tmp/cache \
    TRITON_CACHE_DIR=/tmp/triton \
    TMPDIR=/tmp \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_DISABLE_PROGRESS_BARS=1 \
    TOKENIZERS_PARALLELISM=false \
    TQDM_DISABLE=1

WORKDIR /app

COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 \
 && pip install -r requirements.txt

# Fail this build, not a later code build, when a pin does not import.
RUN python -c "import torch, transformers, peft, trl, datasets, accelerate, bitsandbytes"

RUN useradd --no-create-home --uid 10001 trainer
