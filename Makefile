# The two commands a new user runs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.trtpipe-installed
DYNAMO_VERSION := 1.6.1
DYNAMO_STAMP := $(VENV)/.trtpipe-dynamo-$(DYNAMO_VERSION)-installed

.PHONY: demo test install dynamo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install only when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# NVIDIA Dynamo for trtpipe's Dynamo worker and its tests (~700 MB, no torch, no CUDA). `pip install ai-dynamo` fails
# (its `aisimulate` dependency is a stub that downloads from an unreachable host), so the real dependencies come from
# the `dynamo` extra and the two Dynamo packages go in without theirs. Re-installed only when the dependencies change.
$(DYNAMO_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install -q -e ".[test,dynamo]"
	$(BIN)/pip install -q --no-deps ai-dynamo==$(DYNAMO_VERSION) ai-dynamo-runtime==$(DYNAMO_VERSION)
	touch $(DYNAMO_STAMP)

dynamo: $(DYNAMO_STAMP)

demo: $(STAMP)
	$(BIN)/trtpipe build tiny-llama
	$(BIN)/python -m trtpipe.demo

test: $(STAMP) $(DYNAMO_STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
