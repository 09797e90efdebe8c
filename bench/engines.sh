#!/bin/sh
# Engine benchmark with realistic model shapes: makes the models once (under build/bench-models,
# ignored by git), then runs `parley bench engines` on them. Run it inside the build
# environment, from the repository root:
#
#     scripts/run bench/engines.sh [extra options for parley bench engines]
#
# PARLEY: the binary (default build/parley). MODELS: where the generated models go (default
# build/bench-models).
# LLM_PRESETS: which generated LLM shapes to run besides stories260K (default "0.5b 1.5b").
set -eu
MODELS=${MODELS:-build/bench-models}
LLM_PRESETS=${LLM_PRESETS-0.5b 1.5b}
STORIES=../shared/models/stories260K.gguf
mkdir -p "$MODELS"

RUN="${PARLEY:-build/parley} bench engines"

[ -f "$MODELS/whisper-base.en-random.bin" ] ||
    python3 tests/gen/make-tiny-whisper.py --preset base.en "$MODELS/whisper-base.en-random.bin"
[ -f "$MODELS/medium-piper.onnx" ] ||
    python3 tests/gen/make-tiny-piper.py --preset medium "$MODELS"

llms=""
[ -f "$STORIES" ] && llms="$STORIES"
for p in $LLM_PRESETS; do
    # "words": the padding reads as phrases; v2: each word is a token its text tokenizes into
    f="$MODELS/llama-$p-words-v2-q4_0.gguf"
    [ -f "$f" ] || python3 tests/gen/make-llama-gguf.py --preset "$p" --type q4_0 "$f"
    llms="${llms:+$llms,}$f"
done

mkdir -p bench/out
# shellcheck disable=SC2086 # RUN is a command and its first arguments
exec $RUN --whisper-model "$MODELS/whisper-base.en-random.bin" \
    --piper-model "$MODELS/medium-piper.onnx" ${llms:+--llm-model "$llms"} "$@"
