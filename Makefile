# Two commands on a fresh machine: `make demo` (the whole pipeline, offline, local backend)
# and `make test`. Each sets up the virtualenv it needs.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# Installed first so no other package pulls a multi-GB CUDA build on CPU-only machines.
TORCH_SPEC  ?= torch==2.13.0
EXTRAS      ?= train,serve,dev
STAMP       := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

DEMO_DIR    ?= .pipeline
DEMO_MODEL  := $(DEMO_DIR)/demo-assets/tiny-gemma3
DEMO_DATA   ?= data/text2emoji_sample.jsonl
DEMO_ARGS   ?=

# Offline, self-contained runs: Prefect state and HF caches live under .pipeline/.
export PREFECT_HOME ?= $(abspath $(DEMO_DIR))/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HOME ?= $(abspath $(DEMO_DIR))/hf
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export TQDM_DISABLE ?= 1

.PHONY: demo test test-slow lint format serve-demo clean install

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
	$(BIN)/python -m flows.finetune --backend local --store $(DEMO_DIR) \
		--base-model $(DEMO_MODEL) --dataset $(DEMO_DATA) \
		--sample-size 400 --eval-size 24 --epochs 1 --batch-size 8 --grad-accum 1 \
		--learning-rate 1e-3 --max-length 96 $(DEMO_ARGS)

## serve-demo: like demo, but leave the server running afterwards
serve-demo:
	$(MAKE) demo DEMO_ARGS="--keep-serving $(DEMO_ARGS)"

## test: the default suite (unit, contract, flow, training on a tiny model)
test: $(STAMP)
	$(BIN)/python -m pytest -q

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
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
