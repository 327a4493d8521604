#!/usr/bin/env bash
# The GPU profile's device check: tools/gpu_check.py (= `launch.py bench gpu`), one JSON for the whole
# internvideo2-chat-8b pipeline on random weights of the real shapes. Runs as it is on a bare CUDA box with torch and
# transformers (no internet, no vLLM); what the box lacks arrives as files made by scripts/gpu_check_prepare.sh.
#
#   bash scripts/gpu_check.sh [--stage DIR]... [--no-run] [ARGS for launch.py bench gpu...]
#
#   --stage DIR  copy DIR's files (wheels, vLLM archive parts, the prepared video, tokenizer files) into
#                $GPU_CHECK_HOME/stage (default /tmp/gpu-check/stage) first. A set too big for one transfer comes
#                over several calls while the machine stays up: `--stage .gpucheck/a --no-run`, then
#                `--stage .gpucheck/b` (each call carrying its folder).
#   --no-run     only stage.
# ARGS default to the real sizes on CUDA (`--device cuda`); `--tiny --device cpu` is what CI runs. The JSON goes to
# $OUT/gpu_check.json when $OUT is set (the device machine's output folder), else bench-results/gpu_check.json;
# the log beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR=${GPU_CHECK_HOME:-/tmp/gpu-check}
STAGE=$HOME_DIR/stage
SITE=$HOME_DIR/site
mkdir -p "$STAGE"
run=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) cp -a "$2"/. "$STAGE"/; echo "== staged $2" >&2; shift 2 ;;
    --no-run) run=0; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ "$run" = 0 ]; then
  echo "== $(find "$STAGE" -type f | wc -l) files in $STAGE" >&2
  exit 0
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}

# vLLM's wheel set travels as one tar.xz in parts (../shared/reference/VLLM_OFFLINE_CUDA13.md): join, check, unpack.
if compgen -G "$STAGE/vw.tar.xz.part*" >/dev/null; then
  cat "$STAGE"/vw.tar.xz.part* >"$HOME_DIR/vw.tar.xz"
  if [ -f "$STAGE/vw.tar.xz.sha256" ]; then
    (cd "$HOME_DIR" && echo "$(cut -d' ' -f1 "$STAGE/vw.tar.xz.sha256")  vw.tar.xz" | sha256sum -c - >&2)
  fi
  mkdir -p "$STAGE/vllm-wheels"
  "$PY" -c "import lzma, sys, tarfile; tarfile.open(fileobj=lzma.open(sys.argv[1])).extractall(sys.argv[2])" \
    "$HOME_DIR/vw.tar.xz" "$STAGE/vllm-wheels"
  rm -f "$STAGE"/vw.tar.xz.part* "$HOME_DIR/vw.tar.xz"
fi
mapfile -t wheels < <(find "$STAGE" -name '*.whl' | sort)
if [ ${#wheels[@]} -gt 0 ]; then
  echo "== installing ${#wheels[@]} carried wheels into $SITE" >&2
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  # cutlass-DSL's .pth is ignored outside site directories; vLLM imports `cutlass` at module level
  if [ -d "$SITE/nvidia_cutlass_dsl/dsl_packages" ]; then export PYTHONPATH="$SITE/nvidia_cutlass_dsl/dsl_packages:$PYTHONPATH"; fi
fi

has() { for a in "${args[@]+"${args[@]}"}"; do [ "$a" = "$1" ] && return 0; done; return 1; }
if ! has --device; then args+=(--device "$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')"); fi
video=$(find "$STAGE" -maxdepth 1 -name '*.mp4' | sort | head -n 1)
if [ -n "$video" ] && ! has --video; then args+=(--video "$video"); fi
if [ -f "$STAGE/mistral_tokenizer.model.v3" ] && ! has --mistral-tokenizer; then
  args+=(--mistral-tokenizer "$STAGE/mistral_tokenizer.model.v3")
fi
if [ -f "$STAGE/whisper_tokenizer.json" ] && ! has --whisper-tokenizer; then
  args+=(--whisper-tokenizer "$STAGE/whisper_tokenizer.json")
fi
RESULTS=${OUT:-bench-results}
mkdir -p "$RESULTS"
has --out || args+=(--out "$RESULTS/gpu_check.json")

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_USE_FLASHINFER_SAMPLER=0
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
echo "== $PY launch.py bench gpu ${args[*]}" >&2
set -o pipefail
# JSON alone on stdout; the log (stderr) goes beside the JSON as well
"$PY" launch.py bench gpu "${args[@]}" 2> >(tee "$RESULTS/gpu_check.log" >&2)
