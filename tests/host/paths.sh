#!/usr/bin/env bash
# Host paths through scripts/run: every file a user names (a model, a voice, a VAD model, the
# PocketSphinx model folder, a config file, the database, the model cache and mirror, a WAV to
# write or read) lives in a fresh folder outside the repository's parent folder, and is named
# absolutely, relatively and through a symbolic link. Runs on the host, not inside scripts/run:
# scripts/run itself is what is tested. With a native build it checks the same things natively.
#
#     tests/host/paths.sh            (make test runs it; needs a built build/parley)
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
run="$repo/scripts/run"
parley="$repo/build/parley"
model=${PARLEY_TEST_MODEL:-$repo/../shared/models/stories260K.gguf}

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { # check NAME COMMAND...: passes when the command succeeds
    local name=$1
    shift
    if "$@" >> "$tmp/out.log" 2>&1; then
        ok "$name"
    else
        not_ok "$name"
        tail -5 "$tmp/out.log" | sed 's/^/    /'
    fi
}
is_wav() { [ -s "$1" ] && [ "$(head -c 4 "$1")" = RIFF ]; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-paths.XXXXXX")
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2> /dev/null && wait "$server_pid" 2> /dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
real="$tmp/real"
link="$tmp/link" # a symbolic link to real
mkdir -p "$real/models" "$real/mirror" "$real/out" "$real/asr"
ln -s real "$link"

[ -f "$model" ] || { echo "not ok - no test model at $model"; echo "0 passed, 1 failed"; exit 1; }
cp "$model" "$real/models/story.gguf"
cp "$model" "$real/mirror/"
# Files that live in the build environment are copied out to the host folder, so that the
# programs must read them from the host.
"$run" bash -c "cp -r /usr/share/pocketsphinx/model/en-us '$real/asr/' &&
    cp '$repo/node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx' '$real/vad.onnx' &&
    python3 '$repo/tests/gen/make-tiny-piper.py' '$real/voice' > /dev/null &&
    python3 '$repo/tests/gen/make-tiny-audio-llm.py' '$model' '$real/allm' > /dev/null" ||
    not_ok "copying the engines' files to $real"

# say -o FILE: absolute through the link, and relative to a folder reached through the link.
check "say -o writes an absolute path through a symbolic link" \
    "$run" "$parley" say "Hello from the host." -o "$link/out/abs.wav"
check "  ... and the WAV is on the host" is_wav "$real/out/abs.wav"
(cd "$link/out" && "$run" "$parley" say "Hello again." -o rel.wav > /dev/null 2>&1)
check "say -o writes a relative path in the caller's folder" is_wav "$real/out/rel.wav"
check "say --tts piper --tts-model reads a voice through a symbolic link" \
    "$run" "$parley" say "Hi." --tts piper --tts-model "$link/voice/tiny-piper.onnx" \
    -o "$link/out/piper.wav"

# transcribe FILE with --asr-model-dir, both relative.
text=$(cd "$link" && "$run" "$parley" transcribe out/abs.wav --asr-model-dir asr/en-us 2> /dev/null)
check "transcribe reads a relative WAV and --asr-model-dir (got: '$text')" [ -n "$text" ]

# --model and --mmproj: an audio-LLM (random weights: any words, but it must load and run).
check "transcribe --asr audio-llm reads --model and --mmproj through a symbolic link" \
    "$run" "$parley" transcribe "$link/out/abs.wav" --asr audio-llm --model "$link/allm/text.gguf" \
    --mmproj "$link/allm/mmproj-ultravox.gguf" --max-tokens 4

# The model cache: $HOME's by default, then XDG_CACHE_HOME, then PARLEY_MODELS.
default_cache=$(env -u XDG_CACHE_HOME -u PARLEY_MODELS "$run" "$parley" models path)
check "the default cache is the host's ~/.cache/parley/models ($default_cache)" \
    [ "$default_cache" = "$HOME/.cache/parley/models" ]
case "$default_cache" in *.sysroot*) not_ok "the default cache is inside the sysroot" ;; esac
xdg=$(XDG_CACHE_HOME="$link/xdg" "$run" "$parley" models path)
check "XDG_CACHE_HOME moves the cache ($xdg)" [ "$xdg" = "$link/xdg/parley/models" ]
pulled=$(cd "$link" && PARLEY_MODELS=cache PARLEY_MODEL_MIRROR="$link/mirror" \
    HF_ENDPOINT=http://127.0.0.1:9 "$run" "$parley" models pull stories260k 2> /dev/null)
check "models pull from a mirror through a symbolic link into a relative PARLEY_MODELS" \
    cmp -s "$real/cache/stories260k/stories260K.gguf" "$model"
check "  ... and prints its host path ($pulled)" \
    [ "$(readlink -f "$pulled")" = "$(readlink -f "$real/cache/stories260k/stories260K.gguf")" ]

# serve --config FILE naming the model, the VAD model and the database.
cat > "$real/parley.json" << EOF
{"model": "$link/models/story.gguf", "vad_model": "$link/vad.onnx", "db": "$link/data/talk.db",
 "port": 0, "tts": "none"}
EOF
(cd "$link" && exec "$run" "$parley" serve --config parley.json --asr-model-dir asr/en-us) \
    > "$tmp/serve.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$tmp/serve.log" | head -1)
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2> /dev/null || break
    sleep 0.1
done
if [ -n "$port" ]; then
    exec 3<> "/dev/tcp/127.0.0.1/$port"
    printf 'GET /health HTTP/1.0\r\n\r\n' >&3
    health=$(cat <&3)
    exec 3<&-
    check "serve --config: the model from a symbolic link answers /health" \
        grep -q '"llm":"story.gguf"' <<< "$health"
    check "  ... the Silero model from --vad-model was loaded" grep -q "vad: silero" "$tmp/serve.log"
    check "  ... and the database is on the host" [ -s "$real/data/talk.db" ]
else
    not_ok "serve --config parley.json did not start: $(tail -3 "$tmp/serve.log")"
fi
kill "$server_pid" 2> /dev/null
wait "$server_pid" 2> /dev/null
server_pid=""

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
