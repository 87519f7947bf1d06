#!/usr/bin/env bash
# Gradescope image set-up: the sandbox's tools (util-linux), a venv at /opt/hw8-grading with torch and the grading
# requirements. Works on Gradescope's Ubuntu 22.04 default image (Python 3.10) and newer ones (any Python 3.10-3.13);
# stops with a message that names what is missing.
#   HW8_TORCH_INSTALL  the torch line below, e.g. "true" where the image's Python already has torch (with
#                      HW8_VENV_OPTIONS=--system-site-packages)
#   HW8_WHEELS         a folder of wheels to install from instead of the package index (offline emulation)
#   HW8_SKIP_APT=1     do not run apt-get (the image already has python3-venv and util-linux)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SOURCE="${HW8_AUTOGRADER_ROOT:-/autograder}/source"
VENV=/opt/hw8-grading
TORCH_INSTALL="${HW8_TORCH_INSTALL:-$VENV/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0}"
fail() { echo "setup.sh: $*" >&2; exit 1; }

if [ -z "${HW8_SKIP_APT:-}" ]; then
  apt-get update || fail "apt-get update failed (no network to the image's package mirror?)"
  apt-get install -y --no-install-recommends python3 python3-venv python3-pip util-linux \
    || fail "apt-get could not install python3 python3-venv python3-pip util-linux"
fi
command -v python3 >/dev/null || fail "python3 is missing"
python3 -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' \
  || fail "$(python3 -V) is not supported: the grader needs Python 3.10-3.13"
for tool in setpriv unshare; do
  command -v "$tool" >/dev/null || fail "$tool is missing (package util-linux): the sandbox needs it"
done
# shellcheck disable=SC2086
python3 -m venv ${HW8_VENV_OPTIONS:-} "$VENV" || fail "python3 -m venv failed (package python3-venv)"
# shellcheck disable=SC2086
"$VENV/bin/pip" install ${HW8_WHEELS:+--no-index --find-links "$HW8_WHEELS"} -r "$SOURCE/requirements.txt" \
  || fail "the grading requirements ($SOURCE/requirements.txt) could not be installed"
eval "$TORCH_INSTALL" || fail "torch could not be installed: $TORCH_INSTALL"
"$VENV/bin/python" -c "import torch, numpy, nbformat, tokenizers, datasets, tomli" \
  || fail "the venv cannot import what the harness needs (torch, numpy, nbformat, tokenizers, datasets, tomli)"
echo "setup.sh: $("$VENV/bin/python" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"
