# Two commands do all set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv run test bench bench-scale lock clean-venv

venv: $(STAMP)

# (Re)create the venv when it is missing or requirements.txt / pyproject.toml changed: the pinned
# set first, then this project itself, editable and without dependencies (they are all pinned).
$(STAMP): requirements.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

run: venv
	dvc repro

test: venv
	python -m pytest -q tests

bench: venv
	python benchmarks/embed_throughput.py

# The whole pipeline (dvc repro) on 2,000, 5,000 and 25,000 distinct 800x600 photos: wall time, CPU
# time and peak memory per stage, cache bytes per image, planted recall (docs/performance.md).
bench-scale: venv
	python benchmarks/photo_scale.py --sizes 2000 5000 25000

# Re-pin requirements.txt from requirements.in, i.e. pyproject.toml's dependencies with the extras
# `make test` needs (needs the package registry). The project itself is left out of the pins.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv && .lockenv/bin/pip install -q -r requirements.in
	(echo "# Generated from requirements.in with 'pip freeze' (Python 3.11). Regenerate: make lock"; \
	 .lockenv/bin/pip freeze --exclude neardup) > requirements.txt && rm -rf .lockenv

clean-venv:
	rm -rf $(VENV)
