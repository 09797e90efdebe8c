// Helpers shared by the benchmarks (`parley bench engines`, `parley bench voice`): statistics,
// word error rate, forced alignments, child processes and tools on PATH, and the bare tools both
// benchmarks run (the pocketsphinx CLI with the engine's search settings, llama-server).
//
// Plain functions without shared state: any thread may call them. The process helpers start
// children and wait for them (run_command blocks until the child exits).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace parley {

using bench_clock = std::chrono::steady_clock;
constexpr double NO_VALUE = std::numeric_limits<double>::quiet_NaN();
// Bare CLIs: the input once and this many times in one process; the difference over the extra
// copies is the tool's time per input without its start-up and model loading.
constexpr int REPEAT_COPIES = 5;

double ms_since(bench_clock::time_point t0);

// NaN for an empty list; NaN values in the list are left out.
double median(std::vector<double> v);
// Nearest rank: the smallest value with at least p% of the values at or below it.
double percentile(std::vector<double> v, double p);
double max_of(const std::vector<double> &v);

// A number for JSON: rounded to 0.001, null when not finite.
nlohmann::json json_number(double v);

// Lower-case words of a-z, 0-9 and apostrophes (as the integration tests count them).
std::vector<std::string> words_of(const std::string &text);
// Word error rate of hyp against ref (edit distance over ref's word count).
double word_error_rate(const std::string &ref, const std::string &hyp);

// Where the words are in a forced alignment ({"w":[{"t":word,"b":start_s,"d":dur_s},...]}):
// the first word's start and the last word's end in seconds; tokens starting with '<', '[' or
// '+' (silence, noise) are not words. False when the text holds no aligned word.
// `pauses`, when given, gets the silent gaps between consecutive words, in seconds.
bool alignment_bounds(const std::string &json_text, double *start_s, double *end_s,
                      std::vector<double> *pauses = nullptr);

// --- command lines ---

// A benchmark's options: flags take no value, the others one, handed to a setter that throws
// std::invalid_argument (or any std::exception) for a bad value ("bad value for X: V") or
// bench_option_error for its own message. "-h" / "--help" sets help and stops; "--" stops and,
// with `rest`, hands the arguments after it over. Returns the error, empty on success.
struct bench_option_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct bench_cli {
    std::map<std::string, std::function<void()>> flags;
    std::map<std::string, std::function<void(const std::string &value)>> valued;
    std::vector<std::string> *rest = nullptr;
};
std::string parse_bench_cli(const std::vector<std::string> &args, const bench_cli &cli, bool &help);
// The whole of v as an integer in [lo, hi]; else std::invalid_argument.
int parse_int(const std::string &v, int lo, int hi = std::numeric_limits<int>::max());
// After parsing: the usage on stdout for help (returns 0), the error and the usage on stderr
// (returns 2), else -1 (go on). `prefix` starts the error line ("parley bench: ").
int bench_cli_exit(bool help, const std::string &err, const char *usage, const char *prefix = "");

// --- child processes ---

std::string shell_quote(const std::string &s);
std::string join_command(const std::vector<std::string> &argv);

struct command_result {
    int rc = -1;
    double wall_ms = 0;
    std::string output; // stdout and stderr together
};

// Runs argv through the shell, stdin from /dev/null, and waits.
command_result run_command(const std::vector<std::string> &argv);
// The tool's path on PATH, or empty.
std::string find_tool(const std::string &name);
// The first line of s, cut to 160 characters.
std::string first_line(const std::string &s);

// make(copies) gives the command line that handles its input `copies` times. Returns the median
// over `repeats` runs (after `warmup`) of (wall of `copies` copies - wall of 1) / (copies - 1);
// NaN when the tool fails. one_wall, when given, gets the single runs' walls.
double cli_ms_per_copy(const std::function<std::vector<std::string>(int copies)> &make, int warmup,
                       int repeats, std::vector<double> *one_wall = nullptr,
                       int copies = REPEAT_COPIES);

// The pocketsphinx CLI with the search settings of Parley's engine (asr-pocketsphinx.cpp), so both
// do the same work: the engine's own defaults, or with `fast` the narrowed first pass of
// --asr-fast. The caller appends the WAV files.
std::vector<std::string> pocketsphinx_cli_command(const std::string &tool, bool fast = false);
// The transcript `pocketsphinx single FILE` prints (its JSON's "t"); empty when it fails.
std::string pocketsphinx_cli_transcript(const std::string &tool, const std::string &file);
// The transcript beside a recording (FILE.txt for FILE.wav), trimmed; empty when there is none.
std::string reference_transcript(const std::string &wav);

// --- llama-server ---

// One HTTP/1.1 request to 127.0.0.1:port; reads the response to its end. With first_ms, sets
// it at the first SSE event with text content (from the connection's start to that event) and,
// with stop_at_first, returns right then.
std::string http_request(int port, const std::string &method, const std::string &path,
                         const std::string &body, double *first_ms = nullptr,
                         bool stop_at_first = true);

struct llama_server_options {
    std::string tool; // llama-server's path
    std::string model;
    int threads = 1, threads_batch = 1, context = 2048, batch = 512, port = 0;
};

// Starts llama-server with one slot and waits up to 60 s for /health. Returns its pid (>0), or
// 0 with *error set (the server is stopped then).
int start_llama_server(const llama_server_options &o, std::string *error);
// SIGTERM, then waits up to 10 s for it to end (SIGKILL after that).
void stop_process(int pid);
// A free TCP port on 127.0.0.1 (what the kernel gives for port 0), 0 if none.
int free_port();

// A /v1/chat/completions body: messages [{role, content}], streamed, greedy, prompt cache on.
std::string chat_request_body(const nlohmann::json &messages, int max_tokens);

} // namespace parley
