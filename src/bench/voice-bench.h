// Voice benchmark: simulated clients talk to a real Parley server over the WebSocket protocol.
//
//     parley bench [voice] [--clients 1,4] [--mode hands_free|push_to_talk] [--pace X]
//                  [--turns N | --rounds N] [--url ws://H:P/ws] [--no-bare] [-- serve options]
//
// Each client plays the LibriVox clips (recorded speech with forced word alignments) in 20 ms
// frames at real-time pace, turn after turn, and times every turn on one steady clock: the true
// end of speech, the end-of-turn decision, the final transcript, the first token, the first
// text, the first audio and response_done. The run is repeated for each client count; the
// server's CPU and memory are sampled after every turn. Then, for the same inputs, the bare
// engines (pocketsphinx and espeak-ng CLIs, llama-server replaying the same conversation). It
// prints a summary table and writes JSON (every turn's events) and a self-contained HTML report
// with a latency waterfall. --help lists the options.
//
// Called from the main thread of a command-line process: it spawns `parley serve` (unless
// --url), runs the clients on its own event loop and waits for everything it starts.
#pragma once

#include <string>
#include <vector>

namespace parley {

// args: the arguments after "bench" (or "bench voice"). Returns the exit status: 0 done, 1 the
// server failed or no turn succeeded, 2 bad options or missing clip files.
int voice_bench_main(const std::vector<std::string> &args);

} // namespace parley
