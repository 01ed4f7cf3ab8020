# The two doors of README.md. Each sets itself up (virtual environment, packages) on first use.
VENV ?= .venv
PYTHON ?= python3
# The libvirt driver's extra is installed where libvirt-python can be built (libvirt-dev and
# pkg-config present); elsewhere the libvirt tests skip, saying what to install.
EXTRAS := test$(shell pkg-config --exists libvirt 2>/dev/null && echo ,libvirt)
STAMP := $(VENV)/.installed-$(if $(findstring libvirt,$(EXTRAS)),with-libvirt,plain)-stamp

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

.PHONY: setup demo test lint bench mutation random-order
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vmigrate demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(VENV)/bin/python -m tests.bench

# Checks of the suite itself (docs/testing.md); not part of `make test` or CI's default run.
SUITE_CHECKS := $(VENV)/.suite-checks-stamp
$(SUITE_CHECKS): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[test,suite-checks]'
	touch $(SUITE_CHECKS)

mutation: $(SUITE_CHECKS)
	rm -rf mutants
	$(VENV)/bin/mutmut run > mutmut-run.log 2>&1 || (tail -20 mutmut-run.log; exit 1)
	$(VENV)/bin/mutmut results --all true | sed 's/__mutmut_[0-9]*//; s/\.x[_ǁ].*:/:/' \
		| sort | uniq -c
	$(VENV)/bin/mutmut results

SEEDS ?= 1 2 3
random-order: $(SUITE_CHECKS)
	for seed in $(SEEDS); do $(VENV)/bin/pytest -p randomly -p no:cacheprovider \
		--randomly-seed=$$seed || exit 1; done
