#!/usr/bin/env bash
# Bring the Compose stack (slmkit + Prometheus) up with podman-compose and watch it:
# deploy/test/compose.py says what is checked. Builds the image first if it is missing
# (deploy/test-image.sh). Uses ports 11435 and 9090 on 127.0.0.1.
#   deploy/test-compose.sh [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s test-setup >/dev/null
exec .venv/bin/python deploy/test/compose.py "$@"
