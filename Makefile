# One-command set-up: `make demo` runs the main job, `make test` runs the tests. Both create .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# On a machine with an NVIDIA GPU the same pin resolves to PyPI's CUDA build, and faiss-gpu comes with [gpu].
EXTRAS := $(if $(shell command -v nvidia-smi 2>/dev/null),dev$(comma)gpu,dev)
comma := ,
DATA ?= scifact
INDEX ?= $(DATA)-demo
# a second `make demo` continues the trained model instead of failing on its checkpoints
RESUME = $(if $(wildcard models/$(DATA)-demo-mw/checkpoints),--resume,)

.PHONY: setup demo test lint bench clean docker-smoke

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# The main job: train (MW loss) -> index -> evaluate -> calibrate -> serve. About 35 minutes on 2 CPU cores, set-up included.
demo: setup
	$(BIN)/retriever data info $(DATA)
	$(BIN)/retriever train --data $(DATA) --loss mw --epochs 1 --output models/$(DATA)-demo-mw $(RESUME)
	$(BIN)/retriever index build --data $(DATA) --model models/$(DATA)-demo-mw --name $(INDEX)
	$(BIN)/retriever eval --index $(INDEX) --data $(DATA) --split test --run-file indexes/$(INDEX).test.trec
	$(BIN)/retriever calibrate --index $(INDEX) --data $(DATA) --target-recall 0.95
	$(BIN)/retriever search --index $(INDEX) -k 5 "Vitamin D deficiency is linked to depression"
	$(PY) -m service.demo --index $(INDEX) $(if $(filter 0,$(KEEP)),--no-keep-serving,)

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/pytest -q

bench: setup
	$(PY) -m bench.baselines --dataset scifact --dataset nfcorpus
	$(PY) -m bench.throughput

docker-smoke: setup
	bash docker/smoke.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
