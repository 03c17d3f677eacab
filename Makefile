# snn2loihi developer commands. `make test` is the README's test command and what CI runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# On these machines torch/torchvision install from local disk; override elsewhere if needed.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
LAVA_SPEC ?= lava-nc==0.10.0 lava-dl==0.6.0
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test test-fast lint format bench device-run device-run-dry demo docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=23" "setuptools>=68" wheel
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -r requirements.txt
	# lava-nc/lava-dl declare Python <3.11 and torch <2.4; their real runtime deps are in
	# requirements.txt, and snn2loihi.deploy.lava_compat fixes the one Python 3.11 issue at import time.
	$(PIP) install --no-deps --ignore-requires-python $(LAVA_SPEC)
	$(PIP) install --no-deps --no-build-isolation -e .
	$(PY) -c "import snn2loihi, torch, h5py, onnxruntime, nir, snntorch, norse, rockpool; print('snn2loihi setup ok, torch', torch.__version__)"
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite: slow, Lava and multi-process tests included (CI runs this), one pytest-xdist
# worker per core (at most 4). Target: 8 min on a quiet 2-core CPU; measured times and the
# slowest tests: docs/testing.md.
test: setup lint
	$(VENV)/bin/pytest -q -n auto --maxprocesses 4

# In-process tests only: no slow tests (digits accuracy targets, torch.compile), no Lava
# simulator (marker lava; tests/conftest.py fails an unmarked test that starts it) and no other
# processes (marker multiprocess: DDP, SIGKILL/resume, `python -m snn2loihi`; tests/test_markers.py
# checks both ways). Target: 60 s on a 2-core CPU; measured: docs/testing.md.
test-fast: setup lint
	$(VENV)/bin/pytest -q -n auto --maxprocesses 4 -m "not slow and not lava and not multiprocess"

bench: setup
	$(PY) bench/emulator_vs_lava.py

# One prepared GPU run (<= 8 min): CUDA tests, emulator vs Lava and its float floor, training
# cost (bf16/channels_last on and off), a short fast-CIFAR run -> bench/results/*_cuda.json and
# bench/results/device_run_summary.txt. No setup dependency: the GPU machine gets .venv carried.
device-run:
	bash bench/device_run.sh

# The same parts on the CPU at tiny sizes (about 2 min, 1 thread) -> runs/device_run_dry/
device-run-dry:
	bash bench/device_run.sh --dry

# The main command: train on digits, export, Lava + emulator, parity, report in runs/demo
demo: setup
	$(VENV)/bin/snn2loihi demo --out runs/demo --force

docs: setup
	$(PY) -c "from snn2loihi.app.cli import reference_markdown; open('docs/cli.md', 'w').write(reference_markdown())"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
