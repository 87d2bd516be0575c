# Ratchet developer and quick-start targets. `make run` and `make test` set everything up.
VENV ?= .venv
PY := $(VENV)/bin/python
WORKSPACE ?= workspace
# CPU machines get the CPU build of PyTorch; machines with an NVIDIA driver get a CUDA build.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.5,torch==2.13.0)

.PHONY: setup sandbox run test lint clean

$(VENV)/.ratchet-installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.ratchet-installed sandbox

# Training runs in a bubblewrap sandbox: install it where that asks nothing (root, or sudo without
# a password, with apt-get), else say how in one line. It never fails the build.
APT_BWRAP = env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2 >/dev/null 2>&1
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else sudo=no; fi; \
	  if [ "$$sudo" != no ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "ratchet: installing bubblewrap (apt-get) so that training runs sandboxed"; \
	    $$sudo $(APT_BWRAP) || { $$sudo env DEBIAN_FRONTEND=noninteractive \
	      apt-get update -qq >/dev/null 2>&1; $$sudo $(APT_BWRAP); }; \
	  fi; \
	  command -v bwrap >/dev/null 2>&1 || echo "ratchet: bubblewrap is not installed: training" \
	    "will run unsandboxed; install it with: sudo apt-get install bubblewrap"; \
	  true; }

# A second `make run` while the engine runs reopens its dashboard instead of refusing.
run: setup
	@if [ ! -f $(WORKSPACE)/ratchet.toml ]; then $(VENV)/bin/ratchet init $(WORKSPACE); fi
	@if $(VENV)/bin/ratchet status -C $(WORKSPACE) 2>/dev/null | grep -q '^session .*\[running'; \
	then $(VENV)/bin/ratchet attach -C $(WORKSPACE); else $(VENV)/bin/ratchet run -C $(WORKSPACE); fi

lint: setup
	$(VENV)/bin/ruff check .

# Three workers on two cores: a test often waits (a process starting, a socket, a wall-clock
# backstop), and a third keeps both cores busy; budgets are on the CPU clock, so the load slows
# runs without changing what they measure. A worker that runs out takes half of the busiest
# one's queue (worksteal), so no worker is left alone with minutes of real sessions at the end.
TEST_WORKERS ?= 3
test: setup lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) $(WORKSPACE)
