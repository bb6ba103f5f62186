# Two commands: `make run` (the whole pipeline on the demo corpus) and `make test`.
# Both create .venv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORK   ?= work

.PHONY: run test setup deps-lock system-deps compile bench bench-gpu docs lock clean help

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

LOCK   := requirements.lock

# Every package from the lock, each checked against its hashes, then mmvideos itself without
# resolving anything: the environment is the lock's, on any machine (tests/test_environment.py).
$(STAMP): pyproject.toml $(LOCK)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install exactly requirements.lock (hash-checked), then mmvideos

# uv keeps the pins already in the lock unless pyproject.toml no longer allows them; add
# --upgrade-package NAME (or --upgrade) to move one (or all) forward. Linux x86-64, Python 3.11:
# torch 2.11.0 from PyPI there is the CUDA 13 build with its nvidia-* wheels.
deps-lock: $(STAMP)  ## re-resolve requirements.lock from pyproject.toml (every package pinned, with hashes)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --index-url https://pypi.org/simple --no-annotate \
	  --custom-compile-command "make deps-lock" -o $(LOCK)

# Debian packages: libchromaprint1 (ingest's audio fingerprints, loaded by pyacoustid) and
# espeak-ng (real speech for the tests).
system-deps:  ## install the Debian packages mmvideos needs (libchromaprint1, espeak-ng; chromium for the page tests)
	@{ command -v espeak-ng >/dev/null && command -v chromium >/dev/null && /sbin/ldconfig -p | grep -q libchromaprint.so.1; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng libchromaprint1 chromium >/dev/null; }

run: $(STAMP) system-deps  ## run the whole pipeline on the demo corpus with kfp.local
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/mmvideos run --workdir $(WORK)

test: $(STAMP) system-deps  ## run the test suite
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q

compile: $(STAMP)  ## write the pipeline as KFP IR YAML (pipeline.yaml)
	$(BIN)/mmvideos compile --output pipeline.yaml

bench: $(STAMP) system-deps  ## figures vs references, then the scale benchmarks, map and reduce side, the leakage guard and deterministic pretraining (bench/bench.json, scale.json, leakage.json, determinism.json); docs/benchmarks.md, docs/sizing.md
	$(BIN)/mmvideos bench --output bench
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/mmvideos bench --scale --output bench
	$(BIN)/mmvideos bench --scale --reduce --output bench
	$(BIN)/mmvideos bench --leakage --output bench
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/mmvideos bench --determinism --output bench
	$(BIN)/mmvideos docs

bench-gpu: $(STAMP)  ## on a CUDA machine: models (samples/s, MFU), loader, annotators at batch 1,024 in bf16 (bench-gpu/; docs/benchmarks.md's GPU block)
	$(BIN)/python -m mmvideos.bench.gpu --output bench-gpu
	$(BIN)/mmvideos docs

docs: $(STAMP)  ## write the figures into docs/ (docs/results.md, marked blocks) from results/, bench/ and bench-gpu/
	$(BIN)/mmvideos docs

# After a merge (code is a stage dependency, so dvc.lock changes with any stage's code): bring the
# code deps of dvc.yaml up to date, re-run the demo with `dvc repro` and regenerate docs/; then
# commit dvc.yaml, dvc.lock, results/ and docs/ (and `dvc push` where the remote is reachable).
lock: $(STAMP)  ## refresh dvc.yaml's code deps, dvc repro the demo, regenerate docs/ (commit dvc.lock, results/, docs/)
	$(BIN)/python -m mmvideos.tooling.dvc_deps --write
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	$(BIN)/mmvideos docs

clean:  ## remove run outputs (keeps .venv and the download cache)
	rm -rf $(WORK) pipeline.yaml
