#!/usr/bin/env bash
# Prepare what scripts/gpu_check.sh needs on a bare CUDA box (torch 2.11+cu130, transformers 5.x, Python 3.12, no
# internet), here where PyPI and the project's .venv (scripts/setup.sh) are. Each folder stays under the device
# machine's 64 MiB a call; carry them one call each, back to back, while the machine stays up:
#   .gpucheck/a   ctranslate2 + faster-whisper + openai-whisper (+ more-itertools) wheels for cp312, the Mistral v0.3
#                 tokenizer (from mistral_common) and a multilingual Whisper tokenizer.json (from packaged Whisper base)
#   .gpucheck/b   the PyAV wheel and the 2-minute speech video (made here with ffmpeg + espeak-ng)
#   --vllm        also .gpucheck/v1 ... vN: vLLM 0.26.0's minimal wheel set (../shared/reference/vllm-cuda13), stored
#                 uncompressed inside the wheels, packed as one tar.xz, split into 55 MiB parts, with its sha256
# Then, on the box:  bash scripts/gpu_check.sh --stage .gpucheck/a --no-run;  bash scripts/gpu_check.sh --stage .gpucheck/b
# (with --vllm: stage v1..vN with --no-run first).
# Usage: bash scripts/gpu_check_prepare.sh [--vllm] [OUTDIR]   (default OUTDIR .gpucheck; git ignores it locally)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_VLLM=0
[ "${1:-}" = "--vllm" ] && { WITH_VLLM=1; shift; }
OUTDIR=${1:-.gpucheck}
PY=.venv/bin/python
grep -qxF "/$OUTDIR/" .git/info/exclude 2>/dev/null || echo "/$OUTDIR/" >>.git/info/exclude
ver() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
download() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$@"
}
rm -rf "$OUTDIR/a" "$OUTDIR/b"
mkdir -p "$OUTDIR/a" "$OUTDIR/b"

echo "== $OUTDIR/a: speech wheels and tokenizers"
download "$OUTDIR/a" "ctranslate2==$(ver ctranslate2)" "faster-whisper==$(ver faster-whisper)" \
  "more-itertools==$(ver more-itertools)"
"$PY" -m pip wheel -q --no-deps -w "$OUTDIR/a" "openai-whisper==$(ver openai-whisper)"  # an sdist: pure-Python wheel
"$PY" - "$OUTDIR/a" <<'EOF'
import shutil, sys
from pathlib import Path

from tools.gpu_check import mistral_tokenizer_file, whisper_tokenizer_file

out = Path(sys.argv[1])
shutil.copy2(mistral_tokenizer_file(None), out / "mistral_tokenizer.model.v3")
shutil.copy2(whisper_tokenizer_file(None), out / "whisper_tokenizer.json")
EOF

echo "== $OUTDIR/b: PyAV and the speech video"
download "$OUTDIR/b" "av==$(ver av)"
"$PY" -c "import sys; from pathlib import Path; from tools.gpu_check import write_video; write_video(Path(sys.argv[1]), 120.0)" \
  "$OUTDIR/b/speech_120s.mp4"

if [ "$WITH_VLLM" = 1 ]; then
  LIST=../shared/reference/vllm-cuda13/wheels-minimal.list
  work=$(mktemp -d)
  echo "== vLLM wheel set ($(wc -l <"$LIST") wheels) into $work"
  # name==version from each wheel file name (name-version-tags.whl)
  mapfile -t pins < <(sed -E 's/^([^-]+)-([^-]+)-.*/\1==\2/' "$LIST")
  download "$work" "${pins[@]}"
  "$PY" - "$work" <<'EOF'
import sys, zipfile
from pathlib import Path

for whl in Path(sys.argv[1]).glob("*.whl"):  # ZIP_STORED: xz then compresses across files; names and RECORD unchanged
    tmp = whl.with_suffix(".stored")
    with zipfile.ZipFile(whl) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_STORED)
    tmp.replace(whl)
EOF
  (cd "$work" && tar -cf - ./*.whl | xz -6 -T0 >vw.tar.xz && sha256sum vw.tar.xz >vw.tar.xz.sha256 && split -b 55M vw.tar.xz vw.tar.xz.part)
  i=0
  for part in "$work"/vw.tar.xz.part*; do
    i=$((i + 1))
    rm -rf "$OUTDIR/v$i"
    mkdir -p "$OUTDIR/v$i"
    mv "$part" "$OUTDIR/v$i/"
  done
  cp "$work/vw.tar.xz.sha256" "$OUTDIR/v1/"
  rm -rf "$work"
fi
du -sh "$OUTDIR"/*
