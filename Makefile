# HW8: attention, summarization, BERT/GPT visualisation, kernelized attention.
# `make run` executes every notebook; `make test` runs the checks. Both install what they need first.

# The targets students have too (install, system, run, test, pdf, submission, clean) come from the student Makefile,
# with the instructor's settings: `make run` executes into build/notebooks/ (HW8_FAST=1: <stem>.fast.ipynb), `make pdf`
# reuses those when fresh (else executes first), `make test` runs every test (pyproject's testpaths) after lint and
# the Debian packages the browser-rendering and PDF tests need.
SYSTEM_PKGS := chromium fonts-liberation fonts-dejavu-core texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils
RUN_FLAGS   :=
TEST_NEEDS  := system lint
# every test (pyproject's testpaths) on two pytest-xdist workers, a module (or tests/conftest.py's unit) at a time
TEST_ARGS   := -n 2 --dist loadfile --no-loadscope-reorder
PDF_FLAGS   :=
SUBMISSIONS ?= submissions
include grading/student/Makefile

.PHONY: lint points release autograde gradescope gradescope-check trixie-check bench

lint: $(STAMP)
	$(BIN)/ruff check .

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

# The peer libraries (performer-pytorch) are benchmark-only: installed here, not by `make install`.
PEERS_STAMP := $(VENV)/.peers-installed
$(PEERS_STAMP): bench/requirements-peers.txt $(STAMP)
	$(PY) -m pip install --no-deps -r bench/requirements-peers.txt
	touch $@

bench: $(STAMP) $(PEERS_STAMP)
	$(PY) -m bench.bench_attention
	$(PY) -m bench.time_to_quality
