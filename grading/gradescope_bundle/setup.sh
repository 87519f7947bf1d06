#!/usr/bin/env bash
# Gradescope image set-up (Ubuntu): Python, util-linux (setpriv/unshare for the sandbox), the pinned packages.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip util-linux
python3 -m venv /opt/hw8-grading
/opt/hw8-grading/bin/pip install --upgrade pip
/opt/hw8-grading/bin/pip install --index-url https://download.pytorch.org/whl/cpu \
    "$(grep '^torch==' /autograder/source/requirements.txt)"
/opt/hw8-grading/bin/pip install -r /autograder/source/requirements.txt
