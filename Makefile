# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
# torch is pinned and installed before the package: a bare torch requirement would pull GBs of CUDA wheels.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

# System packages: the ARM cross-compiler and QEMU's STM32F405 verify every export (apt, as root, when missing).
SYSTEM_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm g++

.PHONY: demo test bench install toolchain clean

toolchain:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null && command -v g++ >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "missing system packages: run  sudo apt-get install $(SYSTEM_PACKAGES)"; exit 1; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) toolchain
	$(BIN)/nanoswarm demo

# The flight tests fly live links with wall-clock timeouts; beside compilation and training on 2 cores
# they were starved of telemetry for seconds, so they run second, on their own.
test: $(STAMP) toolchain
	$(BIN)/python -m pytest -n 2 -q -m "not flight"
	$(BIN)/python -m pytest -n 2 -q -m flight

bench: $(STAMP)
	$(BIN)/nanoswarm bench sim --drones-per-swarm 8 --json runs/bench/sim_m8.json
	$(BIN)/nanoswarm bench sim --drones-per-swarm 32 --json runs/bench/sim_m32.json
	$(BIN)/nanoswarm bench sim --drones-per-swarm 8 --obstacle-density 0.2 --json runs/bench/sim_m8_obst20.json
	$(BIN)/nanoswarm bench fly --drones 16 --json runs/bench/fly_16.json

clean:
	rm -rf $(VENV) runs
