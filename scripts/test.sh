#!/usr/bin/env bash
# Set everything up (apt, .venv, models, test tools) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
.venv/bin/ruff check .
# Types: strict on the question path and the LLM layer (pyproject.toml [tool.mypy]).
.venv/bin/python -m mypy model/llm model/qa model/timecode.py
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure for CI, not a pass.
exit $rc
