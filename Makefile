# Two commands matter: `make up` (service + a real demo job) and `make test`.
.PHONY: setup up test test-fast lint format bench clean

setup:
	@bash scripts/bootstrap.sh

up: setup
	@bash scripts/up.sh

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider

test-fast: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow" -x

lint: setup
	.venv/bin/ruff check lipsync app worker tests benchmarks scripts
	.venv/bin/mypy lipsync app worker

format: setup
	.venv/bin/ruff format lipsync app worker tests benchmarks scripts
	.venv/bin/ruff check --fix lipsync app worker tests benchmarks scripts

bench: setup
	.venv/bin/python -m benchmarks.speed
	.venv/bin/python -m benchmarks.quality

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache data/samples
