#!/usr/bin/env bash
# Quality gate for a served model: a golden suite and a multiple-choice set through
# `slm eval --endpoint`; exits non-zero (failing the CI job) on a regression.
#   SLM_URL      the server (default http://127.0.0.1:11435)
#   MODEL        the served model (default smollm2:135m)
#   MIN_PASS     lowest golden pass rate accepted (default 0.75)
#   BASELINE     optional: a second endpoint URL or slm://MODEL; then perplexity may be at
#                most MAX_PPL_INCREASE (default 0.02) above the baseline's
#   SLM_API_KEY  a key, when the server requires one
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
args=(eval --endpoint "${SLM_URL:-http://127.0.0.1:11435}" --model "${MODEL:-smollm2:135m}"
      --suite "${SUITE:-$here/suite.yaml}" --mc "$here/mc.yaml" --min-pass "${MIN_PASS:-0.75}"
      --chunks "${CHUNKS:-2}" --out "${OUT:-quality}")
if [[ -n "${BASELINE:-}" ]]; then
  args+=(--compare "$BASELINE" --max-ppl-increase "${MAX_PPL_INCREASE:-0.02}")
fi
exec "${SLM:-slm}" "${args[@]}"
