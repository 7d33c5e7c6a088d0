#!/usr/bin/env bash
# Build slmkit's CPU image with podman and check it end to end (deploy/test/image.py says what
# is checked). Needs podman (and, to build the stand-in base image, root and debootstrap).
#   deploy/test-image.sh [--no-build] [--base IMAGE] [--keep]
# Runs when deploy/ changes and before a release: it compiles llama.cpp inside the image
# (~25-40 min on 2 cores the first time; pip's cache mount makes later builds minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s test-setup >/dev/null
exec .venv/bin/python deploy/test/image.py "$@"
