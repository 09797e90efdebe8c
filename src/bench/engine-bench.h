// Engine benchmark: Parley's engines against the bare tools on the same files, in one run.
//
//     parley bench engines [--parts asr,llm,tts] [--threads N] [--repeats N] [--llm-model M]...
//
// Each stage runs a warm-up and then --repeats timed runs on both sides, with the same thread
// count, and reports the median: Whisper against whisper-cli, PocketSphinx against the
// pocketsphinx CLI (same search settings), llama.cpp against llama-bench (prompt evaluation,
// first token, time per generated token) and optionally llama-server's first streamed token on
// the same conversation, espeak-ng against the espeak-ng CLI; Piper's first audio on its own. A
// bare tool's model loading is left out of its time (its own printed timings, or a run on a
// tiny input subtracted). It prints a table (stage, Parley ms, bare ms, Parley/bare) and
// writes JSON (--out). A part whose inputs or tools are missing is skipped with a line that
// says why; the run still succeeds. --help lists the options.
//
// Called from the main thread of a command-line process; it starts engines and child processes
// and waits for them.
#pragma once

#include <string>
#include <vector>

namespace parley {

// args: the arguments after "bench engines". Returns the process exit status (0 unless the
// options are wrong or the JSON cannot be written).
int engine_bench_main(const std::vector<std::string> &args);

} // namespace parley
