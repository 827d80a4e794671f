# Two commands matter: `make up` (service + a real demo job) and `make test`.
# `make up ENGINE=musetalk`: pull that engine's weights first (lipsync models pull) and make it
# the service's default engine.
ENGINE ?=
.PHONY: setup up test test-fast lint format docs bench clean lock

setup:
	@bash scripts/bootstrap.sh

up: setup
	@ENGINE="$(ENGINE)" bash scripts/up.sh

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider

test-fast: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow" -x

lint: setup
	.venv/bin/ruff check lipsync app worker service tests benchmarks scripts
	.venv/bin/mypy lipsync app worker service

format: setup
	.venv/bin/ruff format lipsync app worker service tests benchmarks scripts
	.venv/bin/ruff check --fix lipsync app worker service tests benchmarks scripts

# The README's engine and option tables, written from the engines' and options' declarations.
docs: setup
	.venv/bin/python -m lipsync.readme

bench: setup
	.venv/bin/python -m benchmarks.speed
	.venv/bin/python -m benchmarks.quality

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache data/samples

# Refresh the hashed lock files in requirements/ from pyproject.toml + constraints.txt (needs
# PyPI; run it after changing a dependency, then commit the locks). setup, CI and both images
# install only from them. Linux x86_64 wheels; dev (make setup) is resolved first and the image
# locks take its versions: api (base + service, python:3.11-slim), worker (pipeline + service,
# Ubuntu 24.04's Python 3.12). torch: the dev lock takes the CPU build of the pinned version
# (from pip's find-links, else the PyTorch CPU page); the worker lock leaves torch and its own
# dependencies out: its image installs the CUDA build of the pinned version first.
UV_VERSION := 0.13.9
TORCH_WHEELS ?= $(or $(PIP_FIND_LINKS),https://download.pytorch.org/whl/cpu/torch/)
UV_LOCK = .venv-lock/bin/uv pip compile pyproject.toml --quiet --generate-hashes \
	--python-platform x86_64-manylinux_2_28 -c constraints.txt --custom-compile-command "make lock"
lock:
	@[ -f .venv-lock/uv-$(UV_VERSION) ] || { rm -rf .venv-lock && python3 -m venv .venv-lock \
	  && .venv-lock/bin/pip install -q "uv==$(UV_VERSION)" && touch .venv-lock/uv-$(UV_VERSION); }
	@mkdir -p requirements
	sed -n 's/^torch==\(.*\)/torch==\1+cpu/p' constraints.txt | $(UV_LOCK) --extra dev \
	  --python-version 3.11 --find-links "$(TORCH_WHEELS)" -c /dev/stdin -o requirements/dev.lock
	sed -i 's|#   -c /dev/stdin$$|#   its CPU build (make lock)|' requirements/dev.lock
	$(UV_LOCK) --extra service --python-version 3.11 -c requirements/dev.lock \
	  -o requirements/api.lock
	echo torch | $(UV_LOCK) --extra pipeline --extra service --python-version 3.12 \
	  -c requirements/dev.lock --excludes /dev/stdin -o requirements/worker.lock
