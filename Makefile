# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
# torch is pinned and installed before the package: a bare torch requirement would pull GBs of CUDA wheels.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/nanoswarm demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/nanoswarm bench sim --drones-per-swarm 8 --json runs/bench/sim_m8.json
	$(BIN)/nanoswarm bench sim --drones-per-swarm 32 --json runs/bench/sim_m32.json
	$(BIN)/nanoswarm bench sim --drones-per-swarm 8 --obstacle-density 0.2 --json runs/bench/sim_m8_obst20.json

clean:
	rm -rf $(VENV) runs
