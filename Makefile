# postwatch developer entry points.  Every target sets up .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench lint system-deps clean

$(STAMP): pyproject.toml setup.py postwatch/parse/_framing.c postwatch/parse/_shapes.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## make demo: replay the shipped sample log with the embedded defaults and show the findings
demo: $(STAMP)
	$(BIN)/postwatch replay --year 2025 --tz UTC fixtures/maillogs/demo/mail.log

## make test: the whole suite, real Postfix/Dovecot/PostgreSQL/fail2ban components included
test: $(STAMP) system-deps
	$(BIN)/python -m pytest

## make system-deps: the Debian packages the real-component tests run (services not started)
system-deps:
	sh tests/system/install-packages.sh

## make bench: replay throughput and peak memory on a generated 1.5M-line log, against pflogsumm
bench: $(STAMP)
	sh tests/system/install-packages.sh pflogsumm
	$(BIN)/python -m bench.run

## make lint: ruff (lint + format check) and mypy
lint: $(STAMP)
	$(BIN)/ruff check postwatch tests bench
	$(BIN)/ruff format --check postwatch tests bench
	$(BIN)/mypy postwatch

clean:
	rm -rf $(VENV) .bench .pytest_cache .ruff_cache .mypy_cache
