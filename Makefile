# Two commands do all set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv run test bench bench-scale lock clean-venv wheelhouse

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

# Embedding speed (input pipeline, model alone, end to end); the input pipeline before and after issue
# 28 (speed, end to end / model alone, AP and planted recall); then fp32 against int8 / bf16 in the same
# run: speed, ratio, cosine to fp32, AP / F1 on the demo and cifar10-dev (docs/performance.md#precision).
bench: venv
	python benchmarks/embed_throughput.py
	python benchmarks/input_pipeline.py --quality
	python benchmarks/precision.py --models efficientnet-lite0@224 efficientnet-lite2@260 --quality

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

# Wheels for a notebook with the internet off (Kaggle code competitions): this package and its
# dependencies, for Linux x86_64 and Python $(WHEEL_PYTHON) (Kaggle's), TensorFlow left out (the
# notebook has its own). Upload wheelhouse/ as a Kaggle dataset, then in the notebook:
#   pip install --no-index --find-links /kaggle/input/<dataset> neardup
WHEEL_PYTHON ?= 3.11
wheelhouse: venv
	rm -rf wheelhouse && mkdir wheelhouse
	python -m pip wheel -q --no-deps --no-build-isolation -w wheelhouse .
	python -m pip download -q -d wheelhouse --only-binary=:all: --python-version $(WHEEL_PYTHON) \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  wheelhouse/neardup-*.whl
	@du -sh wheelhouse && ls wheelhouse | wc -l
