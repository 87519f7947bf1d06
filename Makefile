# HW8: attention, summarization, BERT/GPT visualisation, kernelized attention.
# `make run` executes every notebook; `make test` runs the checks. Both install what they need first.

PYTHON_SYS ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
PY         := $(BIN)/python
STAMP      := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

SYSTEM_PKGS := chromium fonts-liberation fonts-dejavu-core texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils
SUBMISSIONS ?= submissions

.PHONY: install system run test lint points release autograde gradescope gradescope-check trixie-check submission pdf bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -r requirements-nodeps.txt
	touch $@

# Debian packages for the browser-rendering and PDF checks (chromium, LaTeX, pandoc, pdftotext).
system:
	@missing=""; \
	for c in chromium xelatex pandoc pdftotext; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $(SYSTEM_PKGS); \
	fi

# Every notebook, headless, into build/notebooks/ (HW8_FAST=1: <stem>.fast.ipynb); `make pdf` reuses them.
# Cells keep running after a failure; the summary at the end lists them; non-zero exit only for required parts.
# First a preflight (homework/preflight.py, seconds): the visible tests of the kernel_attention.py functions that
# Summarization.ipynb trains with; if one fails, that notebook is not run (exit 1).
# Skip it: .venv/bin/python -m homework.run_notebooks --no-preflight
run: $(STAMP)
	$(PY) -m homework.run_notebooks

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) system lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# Write every copy of the point values (test cells, points cells, README tables) from the trusted checks and notebooks.
points: $(STAMP)
	$(PY) -m grading.points

release: $(STAMP)
	$(PY) -m grading.release

# make autograde SUBMISSIONS=folder [JOBS=n] [OUT=folder]: n students graded at once (one sandbox each), results in
# OUT (default build/autograde); one run at a time on a machine (they would share the sandbox users)
JOBS ?= 2
OUT ?= build/autograde
autograde: $(STAMP)
	$(PY) -m grading.autograde $(SUBMISSIONS) --jobs $(JOBS) --out $(OUT)

gradescope: $(STAMP)
	$(PY) -m grading.gradescope

# The Gradescope route on an emulation of Gradescope's image and limits (root: debootstrap, chroot, cgroups): a Debian
# trixie root filesystem (Python 3.13), setup.sh, the test corpus graded at 768 MB and half a CPU without
# CAP_SYS_ADMIN, results.json checked against Gradescope's schema (grading/gradescope_check.py; build/gradescope-check/)
gradescope-check: $(STAMP)
	$(PY) -m grading.gradescope_check

# The student release on Python 3.13 with Debian's torch 2.6, used as on Colab (root: debootstrap, chroot, mount): the
# model student on a stand-in Google Drive, the notebooks run from /content in fast mode through their first cell,
# the visible tests, `python -m homework.submission`, an uploaded release zip (bench/trixie_student.py)
trixie-check: $(STAMP)
	$(PY) -m bench.trixie_student

# SUBMISSION_FLAGS=--allow-fast: accept fast-mode notebooks and checkpoint (end-to-end tests only).
submission: $(STAMP)
	$(PY) -m homework.submission $(SUBMISSION_FLAGS)

pdf: $(STAMP) system
	$(PY) -m homework.pdf

# The peer libraries (performer-pytorch) are benchmark-only: installed here, not by `make install`.
PEERS_STAMP := $(VENV)/.peers-installed
$(PEERS_STAMP): bench/requirements-peers.txt $(STAMP)
	$(PY) -m pip install --no-deps -r bench/requirements-peers.txt
	touch $@

bench: $(STAMP) $(PEERS_STAMP)
	$(PY) -m bench.bench_attention
	$(PY) -m bench.time_to_quality

clean:
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
