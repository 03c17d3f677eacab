# snn2loihi developer commands. `make test` is the README's test command and what CI runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# On these machines torch/torchvision install from local disk; override elsewhere if needed.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
LAVA_SPEC ?= lava-nc==0.10.0 lava-dl==0.6.0
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test test-fast lint format bench demo docs clean

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
	$(PY) -c "import snn2loihi, torch, h5py, onnxruntime; print('snn2loihi setup ok, torch', torch.__version__)"
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite, slow tests included (about 4 minutes on a 2-core CPU; CI runs this).
test: setup lint
	$(VENV)/bin/pytest -q

# Without the tests marked slow (digits accuracy targets, a second Lava parity run, torch.compile).
test-fast: setup lint
	$(VENV)/bin/pytest -q -m "not slow"

bench: setup
	$(PY) bench/emulator_vs_lava.py

# The main command: train on digits, export, Lava + emulator, parity, report in runs/demo
demo: setup
	$(VENV)/bin/snn2loihi demo --out runs/demo

docs: setup
	$(PY) -c "from snn2loihi.app.cli import reference_markdown; open('docs/cli.md', 'w').write(reference_markdown())"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
