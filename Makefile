# Ratchet developer and quick-start targets. `make run` and `make test` set everything up.
VENV ?= .venv
PY := $(VENV)/bin/python
WORKSPACE ?= workspace
# CPU machines get the CPU build of PyTorch; machines with an NVIDIA driver get a CUDA build.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.5,torch==2.13.0)

.PHONY: setup run test lint clean

$(VENV)/.ratchet-installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.ratchet-installed

# A second `make run` while the engine runs reopens its dashboard instead of refusing.
run: setup
	@if [ ! -f $(WORKSPACE)/ratchet.toml ]; then $(VENV)/bin/ratchet init $(WORKSPACE); fi
	@if $(VENV)/bin/ratchet status -C $(WORKSPACE) 2>/dev/null | grep -q '^session .*\[running'; \
	then $(VENV)/bin/ratchet attach -C $(WORKSPACE); else $(VENV)/bin/ratchet run -C $(WORKSPACE); fi

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest -q -n 2 --dist load

clean:
	rm -rf $(VENV) $(WORKSPACE)
