# Parley: two commands.
#   make serve [PROFILE=cpu|offline|voxtral] [MODEL=path/to/model.gguf] [PORT=8000]
#                                                       set up, build, run on http://127.0.0.1:8000
#   make test                                           set up, build, run every test
# Everything runs through scripts/run: natively on a host with the packages of
# scripts/packages.txt, otherwise inside the Debian sid sysroot that scripts/setup makes.

# The default profile of models/manifest.json (cpu: Whisper base.en, Qwen2.5 0.5B, Piper):
# missing models are pulled when online; offline engines stand in for what can't be had.
# PROFILE=offline never downloads. MODEL=FILE.gguf overrides the profile's language model.
PROFILE ?= default
MODEL ?=
PORT ?= 8000
# Local folders searched for model files before the network (the shared test models here).
MIRROR ?= $(abspath $(wildcard ../shared/models))
ARGS ?=
RUN := scripts/run

.PHONY: setup build serve test test-model unit integration e2e fuzz soak bench bench-memory bench-engines bench-rest bench-cluster format clean

setup:
	@scripts/setup

build: setup
	@$(RUN) bash -c 'cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > build.log 2>&1 || { cat build.log; exit 1; }; ninja -C build'

node_modules/.parley-stamp: package.json package-lock.json .npmrc | setup
	@$(RUN) npm ci --no-audit --no-fund --loglevel=error
	@touch $@

serve: export PARLEY_MODEL_MIRROR ?= $(MIRROR)
serve: build node_modules/.parley-stamp
	@$(RUN) build/parley serve --port $(PORT) --profile $(PROFILE) $(if $(MODEL),--model $(MODEL)) $(ARGS)

test: test-model build node_modules/.parley-stamp
	@echo; echo "=== host paths through scripts/run (tests/host/paths.sh)"
	@tests/host/paths.sh
	@$(RUN) tests/run-all

# The tests run the real stories260K model from ../shared/models (or PARLEY_TEST_MODEL): say so
# before minutes of setup and build, not as dozens of failed tests after them. A checkout cloned
# from a local one (git clone /path/parley DIR) without shared/ beside it uses the one beside
# its origin.
SHARED_MODEL := shared/models/stories260K.gguf
ORIGIN := $(shell git config --get remote.origin.url 2>/dev/null)
ORIGIN_MODEL := $(if $(filter /%,$(ORIGIN)),$(wildcard $(abspath $(ORIGIN)/../$(SHARED_MODEL))))
TEST_MODEL := $(or $(PARLEY_TEST_MODEL),$(wildcard ../$(SHARED_MODEL)),$(ORIGIN_MODEL),../$(SHARED_MODEL))
ifneq ($(TEST_MODEL),../$(SHARED_MODEL))
export PARLEY_TEST_MODEL := $(abspath $(TEST_MODEL))
endif
test-model:
	@test -f "$(TEST_MODEL)" || { echo "make test: no test model at $(TEST_MODEL): put stories260K.gguf in ../shared/models/ beside this checkout (see docs/testing.md) or set PARLEY_TEST_MODEL=FILE" >&2; exit 2; }

unit: build
	@$(RUN) bash -c 'cd build && ctest --output-on-failure'

integration: test-model build node_modules/.parley-stamp
	@$(RUN) node --test --test-force-exit --test-concurrency=1 'tests/integration/*.test.mjs'

e2e: test-model build node_modules/.parley-stamp
	@$(RUN) node --test --test-force-exit 'tests/e2e/*.test.mjs'

# The parsers of what clients and files send, fuzzed (libFuzzer + ASan/UBSan, built with clang in
# build-fuzz/): FUZZ_SECONDS per target (make test runs 10 s each). See docs/testing.md.
FUZZ_SECONDS ?= 300
fuzz: setup
	@$(RUN) tests/fuzz/run $(FUZZ_SECONDS)

# Long conversations (8 clients x 100 turns) with disconnects, resumes, barge-ins, malformed
# messages and two kill -9 restarts: the store, memory, threads and descriptors checked after
# (about 5 min here). ARGS go to tests/soak/run.mjs (e.g. ARGS="--clients 4 --seed 7").
soak: test-model build node_modules/.parley-stamp
	@$(RUN) node tests/soak/run.mjs $(ARGS)

# Simulated voice clients over the real protocol (1 then 4), per-stage latency, CPU, memory, the
# bare engines on the same inputs; bench/out/voice.{json,html}. Then hands-free end-of-turn and
# barge-in timings. ARGS go to parley bench (e.g. ARGS="-- --model M.gguf").
bench: build node_modules/.parley-stamp
	@$(RUN) build/parley bench $(ARGS)
	@$(RUN) node bench/handsfree.mjs

# Memory check: 500 push-to-talk turns as fast as the server takes them (about 6 min here).
# Capacity of one node against two behind HAProxy with PostgreSQL and two llama-servers
# (bench/cluster.mjs drives parley bench --url); bench/out/cluster.json.
bench-cluster: build node_modules/.parley-stamp
	@$(RUN) node bench/cluster.mjs $(ARGS)

bench-memory: build node_modules/.parley-stamp
	@$(RUN) build/parley bench --clients 1 --turns 500 --pace 0 --mode push_to_talk --no-bare \
		--out bench/out/memory.json --html bench/out/memory.html $(ARGS)

# POST /v1/audio/transcriptions against whisper-server's /inference: the same Whisper model
# (base.en-shaped, generated once), clips, threads and beam search; bench/out/rest-transcribe.json.
bench-rest: build node_modules/.parley-stamp
	@$(RUN) node bench/rest-transcribe.mjs $(ARGS)

# Parley's engines against llama-bench, llama-server, whisper-cli, pocketsphinx and espeak-ng on
# the same inputs, with realistic-shape generated models (0.5B/1.5B LLM, Whisper base.en).
bench-engines: build
	@$(RUN) bench/engines.sh $(ARGS)

format:
	clang-format -i src/*/*.cpp src/*/*.h tests/unit/*.cpp tests/unit/*.h

clean:
	rm -rf build
