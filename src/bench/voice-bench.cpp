// Voice benchmark (see voice-bench.h).
//
// The simulated clients are coroutines on one Boost.Asio event loop run by the calling thread:
// every time stamp comes from the same steady clock, taken where the message was handed to the
// socket or read from it, and the clients' state needs no locks. The WebSocket client is
// src/net/ws-client.h.
// The spawned server's stderr is read by a thread of its own, so that its log never blocks it.
#include "bench/voice-bench.h"

#include "app/config.h"
#include "audio/audio-file.h"
#include "audio/resampler.h"
#include "bench/bench-report.h"
#include "bench/bench-util.h"
#include "core/base64.h"
#include "core/worker.h"
#include "net/ws-client.h"

#include <boost/asio.hpp>
#include <boost/asio/cancel_after.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace parley {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using asio::awaitable;
using std::chrono::milliseconds;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

constexpr int SAMPLE_RATE = 16000;
constexpr size_t FRAME_SAMPLES = SAMPLE_RATE / 50; // 20 ms, as a browser's audio worklet sends
constexpr int CLIENT_SLICE_US = 100; // the clients' thread's scheduler slice (set_thread_slice)
const char *const CLIP_IDS[] = {"0870", "0880", "0890", "0920", "0930"};
const char *const CLIP_PREFIX = "sense_and_sensibility_01_austen_64kb-";

// --- options ---

struct voice_bench_options {
    std::vector<int> clients = {1, 4};
    std::string mode = "hands_free";
    std::string protocol = "native"; // realtime: each run also over the OpenAI Realtime API
    bool sync = false;
    int rounds = 2;
    int turns = 0; // per client, counted; 0: the clips `rounds` times
    int warmup = 1;
    double pace = 1;
    int gap_ms = 300;
    int client_slice_us = CLIENT_SLICE_US;
    int client_rt_priority = -1; // -1: REALTIME_PRIORITY_AUTO where the kernel allows it
    int timeout_ms = 60000;
    int turns_per_session = 0; // 0: one session per client
    std::string url;           // empty: spawn a server
    int pid = 0;
    std::string api_key;
    bool bare = true;
    int bare_turns = 20;
    std::string audio_dir = "/usr/share/pocketsphinx/test/data/librivox";
    std::string out = "bench/out/voice.json";
    std::string html = "bench/out/voice.html";
    std::vector<std::string> server_args; // after "--"
};

const char *USAGE = R"(usage: parley bench [voice] [options] [-- parley serve options]
Simulated clients speak recorded LibriVox clips to a real server over the WebSocket protocol,
turn after turn, and time every stage; then the bare engines on the same inputs.
  --clients LIST        client counts, run one after another (default 1,4)
  --mode M              hands_free (default: the server's VAD ends each turn) or push_to_talk
  --protocol P          native (default), or realtime: each client count runs over Parley's
                        protocol and then over the OpenAI Realtime API (/v1/realtime: 24 kHz
                        base64 audio in JSON, server VAD or commits), and the two are compared
  --sync                all clients play the same clip at the same instant (worst case)
  --rounds N            each client plays the 5 clips N times (default 2)
  --turns N             counted turns per client instead of --rounds
  --warmup N            turns per client before the counted ones (default 1)
  --pace X              1 real time (default), 2 twice as fast, 0 as fast as possible
  --gap-ms N            pause after a reply has played out (default 300)
  --client-slice-us N   scheduler slice the clients' thread asks for (default 100; 0: the
                        kernel's default; see parley serve --io-slice-us)
  --client-rt-priority N  SCHED_FIFO priority of the clients' thread, 1..99; 0: the normal
                        policy; default -1: 10 where allowed (see parley serve --io-rt-priority)
  --timeout-ms N        a turn without response_done by then fails (default 60000)
  --turns-per-session N reconnect after N turns (default: one session per client)
  --url ws://H:P/ws     benchmark a running server instead of spawning one
  --pid N               with --url: the server's pid, for CPU and memory
  --api-key KEY         sent as a bearer token
  --no-bare             skip the bare engines (pocketsphinx, espeak-ng, llama-server)
  --bare-turns N        turns llama-server replays (default 20)
  --audio-dir DIR       the LibriVox clips (default /usr/share/pocketsphinx/test/data/librivox)
  --out FILE            JSON with every turn's events (default bench/out/voice.json)
  --html FILE           the report page (default bench/out/voice.html)
  -h, --help
Options after -- go to the spawned `parley serve` (e.g. -- --model M.gguf --threads 2). The
default model is $PARLEY_TEST_MODEL, else ../shared/models/stories260K.gguf when it exists.
Example (memory check): parley bench --clients 1 --turns 500 --pace 0 --mode push_to_talk
)";

std::string parse_options(const std::vector<std::string> &args, voice_bench_options &o,
                          bool &help) {
    bool rounds_given = false;
    bench_cli cli;
    cli.rest = &o.server_args;
    cli.flags = {{"--sync", [&] { o.sync = true; }}, {"--no-bare", [&] { o.bare = false; }}};
    using value = const std::string &;
    cli.valued = {
        {"--clients",
         [&](value v) {
             o.clients.clear();
             std::stringstream ss(v);
             std::string item;
             while (std::getline(ss, item, ','))
                 o.clients.push_back(parse_int(item, 1, 256));
             if (o.clients.empty()) throw std::invalid_argument(v);
         }},
        {"--mode",
         [&](value v) {
             if (v != "hands_free" && v != "push_to_talk")
                 throw bench_option_error("--mode is hands_free or push_to_talk, not " + v);
             o.mode = v;
         }},
        {"--protocol",
         [&](value v) {
             if (v != "native" && v != "realtime")
                 throw bench_option_error("--protocol is native or realtime, not " + v);
             o.protocol = v;
         }},
        {"--rounds",
         [&](value v) {
             o.rounds = parse_int(v, 1);
             rounds_given = true;
         }},
        {"--turns", [&](value v) { o.turns = parse_int(v, 1); }},
        {"--warmup", [&](value v) { o.warmup = parse_int(v, 0); }},
        {"--pace",
         [&](value v) {
             size_t used = 0;
             o.pace = std::stod(v, &used);
             if (used != v.size() || o.pace < 0 || !std::isfinite(o.pace))
                 throw std::invalid_argument(v);
         }},
        {"--gap-ms", [&](value v) { o.gap_ms = parse_int(v, 0); }},
        {"--client-slice-us", [&](value v) { o.client_slice_us = parse_int(v, 0); }},
        {"--client-rt-priority", [&](value v) { o.client_rt_priority = parse_int(v, -1, 99); }},
        {"--timeout-ms", [&](value v) { o.timeout_ms = parse_int(v, 100); }},
        {"--turns-per-session", [&](value v) { o.turns_per_session = parse_int(v, 1); }},
        {"--url", [&](value v) { o.url = v; }},
        {"--pid", [&](value v) { o.pid = parse_int(v, 1); }},
        {"--api-key", [&](value v) { o.api_key = v; }},
        {"--bare-turns", [&](value v) { o.bare_turns = parse_int(v, 0); }},
        {"--audio-dir", [&](value v) { o.audio_dir = v; }},
        {"--out", [&](value v) { o.out = v; }},
        {"--html", [&](value v) { o.html = v; }},
    };
    if (std::string err = parse_bench_cli(args, cli, help); !err.empty() || help) return err;
    if (o.turns > 0 && rounds_given) return "give --turns or --rounds, not both";
    if (o.turns == 0) o.turns = o.rounds * int(std::size(CLIP_IDS));
    return {};
}

// --- clips ---

constexpr int REALTIME_RATE = 24000; // the Realtime API's audio/pcm

struct bench_clip {
    std::string name, path, text;
    std::vector<int16_t> pcm;
    std::vector<int16_t> pcm24; // the same at 24 kHz (the Realtime API's), resampled whole
    size_t speech_end = 0;      // the sample at the last word's end
    bool aligned = false;       // from the forced alignment (else from the signal)
    // Silence inside the speech (between aligned words), ms: the longest gap and all of them.
    double pause_max_ms = std::numeric_limits<double>::quiet_NaN();
    double pause_total_ms = std::numeric_limits<double>::quiet_NaN();
    double seconds() const { return double(pcm.size()) / SAMPLE_RATE; }
};

// Where the speech ends by the signal: the last 10 ms window above a tenth of the loudest.
size_t signal_speech_end(const std::vector<int16_t> &pcm) {
    const size_t win = SAMPLE_RATE / 100;
    std::vector<double> rms;
    for (size_t i = 0; i + win <= pcm.size(); i += win) {
        double s = 0;
        for (size_t j = 0; j < win; ++j)
            s += double(pcm[i + j]) * pcm[i + j];
        rms.push_back(std::sqrt(s / double(win)));
    }
    double loud = 0.1 * (rms.empty() ? 0 : *std::max_element(rms.begin(), rms.end()));
    for (size_t k = rms.size(); k-- > 0;)
        if (rms[k] > loud) return (k + 1) * win;
    return pcm.size();
}

std::string read_file(const std::string &path, bool *ok) {
    std::ifstream f(path, std::ios::binary);
    *ok = bool(f);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Empty on success, else the one-line reason.
std::string load_clips(const std::string &dir, std::vector<bench_clip> &clips) {
    for (const char *id : CLIP_IDS) {
        bench_clip c;
        c.name = id;
        std::string base = (fs::path(dir) / (std::string(CLIP_PREFIX) + id)).string();
        c.path = base + ".wav";
        if (!fs::exists(c.path)) return "missing clip file " + c.path;
        try {
            pcm_audio a = read_audio_file(c.path);
            if (a.sample_rate != SAMPLE_RATE) return c.path + " is not 16 kHz";
            if (a.samples.empty()) return c.path + " holds no audio";
            c.pcm = std::move(a.samples);
            c.pcm24 = resample(c.pcm, SAMPLE_RATE, REALTIME_RATE);
        } catch (const std::exception &e) {
            return e.what();
        }
        bool ok = false;
        c.text = read_file(base + ".txt", &ok);
        if (!ok) return "missing transcript " + base + ".txt";
        while (!c.text.empty() && std::isspace(static_cast<unsigned char>(c.text.back())))
            c.text.pop_back();
        std::string alignment = read_file(base + ".json", &ok);
        double start_s = 0, end_s = 0;
        std::vector<double> pauses;
        if (ok && alignment_bounds(alignment, &start_s, &end_s, &pauses)) {
            c.speech_end = size_t(std::lround(end_s * SAMPLE_RATE));
            c.aligned = true;
            c.pause_max_ms = c.pause_total_ms = 0;
            for (double p : pauses) {
                c.pause_max_ms = std::max(c.pause_max_ms, p * 1000);
                c.pause_total_ms += p * 1000;
            }
        } else {
            c.speech_end = signal_speech_end(c.pcm);
        }
        c.speech_end = std::min(c.speech_end, c.pcm.size() - 1);
        clips.push_back(std::move(c));
    }
    return {};
}

// --- the spawned server ---

// `parley serve` as a child process; its stderr is kept (the tail) by a reader thread.
class server_process {
  public:
    ~server_process() { stop(); }

    // Starts exe with args and waits for its "listening on http://HOST:PORT" line. False with
    // *why when it exits or does not listen within timeout.
    bool start(const std::string &exe, const std::vector<std::string> &args,
               std::chrono::seconds timeout, std::string *why) {
        int fds[2];
        if (pipe(fds) != 0) {
            *why = std::string("pipe: ") + std::strerror(errno);
            return false;
        }
        std::vector<std::string> all = {exe};
        all.insert(all.end(), args.begin(), args.end());
        std::vector<char *> argv;
        for (auto &a : all)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = fork();
        if (pid_ < 0) {
            *why = std::string("fork: ") + std::strerror(errno);
            return false;
        }
        if (pid_ == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0);
            dup2(null, 1);
            dup2(fds[1], 2);
            close(fds[0]);
            close(fds[1]);
            execv(exe.c_str(), argv.data());
            _exit(127);
        }
        close(fds[1]);
        reader_ = std::jthread([this, fd = fds[0]] { read_log(fd); });
        static const std::regex listening(R"(listening on http://[^\s:]+:(\d+))");
        std::unique_lock lock(m_);
        bool found = cv_.wait_for(lock, timeout, [&] {
            std::smatch m;
            if (std::regex_search(log_, m, listening)) port_ = std::stoi(m[1]);
            return port_ > 0 || eof_;
        });
        if (port_ > 0) return true;
        lock.unlock();
        if (found) { // its stderr closed: it ended
            waitpid(pid_, &exit_status_, 0);
            pid_ = 0;
            *why = how_it_ended();
        } else {
            *why = "it did not listen within " + std::to_string(timeout.count()) + " s";
        }
        stop();
        return false;
    }

    int pid() const { return pid_; }
    int port() const { return port_; }

    bool alive() {
        if (pid_ <= 0) return false;
        int status = 0;
        pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            exit_status_ = status;
            pid_ = 0;
            return false;
        }
        return true;
    }

    // How it ended ("exit status 2", "killed by signal 11"), once alive() said it had.
    std::string how_it_ended() const {
        if (WIFEXITED(exit_status_))
            return "exit status " + std::to_string(WEXITSTATUS(exit_status_));
        if (WIFSIGNALED(exit_status_))
            return "killed by signal " + std::to_string(WTERMSIG(exit_status_)) + " (" +
                   strsignal(WTERMSIG(exit_status_)) + ")";
        return "ended";
    }

    std::string log() const {
        std::lock_guard lock(m_);
        return log_;
    }

    // The last `lines` lines of the log.
    std::string log_tail(int lines) const {
        std::string s = log();
        size_t p = s.size();
        if (p > 0 && s[p - 1] == '\n') --p;
        while (lines-- > 0) {
            size_t nl = p == 0 ? std::string::npos : s.rfind('\n', p - 1);
            if (nl == std::string::npos) return s;
            p = nl;
        }
        return s.substr(p + 1);
    }

    // SIGTERM (the server stores and closes cleanly), then waits for it and for the reader.
    void stop() {
        if (pid_ > 0) {
            stop_process(pid_);
            pid_ = 0;
        }
        if (reader_.joinable()) reader_.join();
    }

  private:
    void read_log(int fd) {
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            std::lock_guard lock(m_);
            log_.append(buf, size_t(n));
            // Long runs log a line per turn: keep the start (the engines) and a recent tail.
            if (log_.size() > (1u << 20))
                log_ =
                    log_.substr(0, 16384) + "\n[...]\n" + log_.substr(log_.size() - (256u << 10));
            cv_.notify_all();
        }
        close(fd);
        std::lock_guard lock(m_);
        eof_ = true;
        cv_.notify_all();
    }

    int pid_ = 0, port_ = 0, exit_status_ = 0;
    mutable std::mutex m_;
    std::condition_variable cv_;
    std::string log_;
    bool eof_ = false;
    std::jthread reader_;
};

// What the server is running with, for the bare engines and the report.
struct server_facts {
    std::string model, asr = "pocketsphinx", tts = "espeak", voice = "en-us";
    std::string system_prompt;
    int rate_wpm = 175, context = 2048, threads = 0, threads_batch = 0, batch = 512;
    int max_tokens = 128;
};

struct proc_sample {
    double cpu_s = NO_VALUE, rss_kb = NO_VALUE, hwm_kb = NO_VALUE;
};

// CPU seconds (utime + stime) from a line of /proc/PID/stat or /proc/PID/task/TID/stat; NaN
// when it cannot be read.
double stat_cpu_s(const std::string &line) {
    size_t p = line.rfind(')'); // the command name may hold spaces and parentheses
    if (p == std::string::npos || p + 2 >= line.size()) return NO_VALUE;
    std::istringstream rest(line.substr(p + 2));
    std::vector<std::string> f;
    std::string x;
    while (rest >> x)
        f.push_back(x);
    // After the name: state is field 3, utime 14, stime 15.
    if (f.size() <= 12) return NO_VALUE;
    return double(std::stoull(f[11]) + std::stoull(f[12])) / double(sysconf(_SC_CLK_TCK));
}

// CPU time (utime + stime) from /proc/PID/stat, VmRSS and VmHWM from /proc/PID/status.
proc_sample sample_process(int pid) {
    proc_sample s;
    if (pid <= 0) return s;
    std::string dir = "/proc/" + std::to_string(pid);
    std::ifstream stat(dir + "/stat");
    std::string line;
    if (std::getline(stat, line)) s.cpu_s = stat_cpu_s(line);
    std::ifstream status(dir + "/status");
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = std::atof(line.c_str() + 6);
        if (line.rfind("VmHWM:", 0) == 0) s.hwm_kb = std::atof(line.c_str() + 6);
    }
    return s;
}

// CPU seconds (utime + stime) and name of every thread of PID, by thread id, from
// /proc/PID/task/*/stat.
struct thread_cpu {
    std::string name;
    double cpu_s = 0;
};
std::map<int, thread_cpu> thread_cpu_sample(int pid) {
    std::map<int, thread_cpu> by_tid;
    if (pid <= 0) return by_tid;
    std::error_code ec;
    for (const auto &task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
        std::ifstream stat(task.path() / "stat");
        std::string line;
        if (!std::getline(stat, line)) continue;
        size_t open = line.find('('), close = line.rfind(')');
        double cpu = stat_cpu_s(line);
        int tid = std::atoi(task.path().filename().c_str());
        if (open != std::string::npos && close > open && std::isfinite(cpu) && tid > 0)
            by_tid[tid] = {line.substr(open + 1, close - open - 1), cpu};
    }
    return by_tid;
}

// Keeps the last CPU time seen of every thread, so that a thread that ends during the run (a
// session's, when its client leaves) still counts up to the last sample.
void merge_thread_cpu(std::map<int, thread_cpu> &seen, int pid) {
    for (auto &[tid, t] : thread_cpu_sample(pid))
        seen[tid] = std::move(t);
}

// Busy CPU seconds of the whole machine (all but idle and iowait, from /proc/stat).
double machine_busy_s() {
    std::ifstream stat("/proc/stat");
    std::string cpu;
    double v[8] = {};
    if (!(stat >> cpu) || cpu != "cpu") return NO_VALUE;
    for (double &x : v)
        stat >> x;
    // user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / double(sysconf(_SC_CLK_TCK));
}

// --- the clients ---

// A hands-free microphone: sends 20 ms frames all the time, the queued clip's or silence.
// The OpenAI Realtime API's events in the native protocol's words, so that one turn loop
// times both: session.created is `ready`, the transcription's completion the final
// `transcript`, each transcript delta a `text_chunk`, each audio delta an audio message of its
// decoded size, response.done `response_done` (or `interrupted` when cancelled).
void realtime_to_native(ws_message &m) {
    if (m.binary || !m.j.is_object()) return;
    const std::string t = m.type;
    auto str = [](const json &j, const char *k) {
        return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
    };
    if (t == "session.created") {
        m.type = "ready";
        m.j = {{"type", "ready"}, {"audio_format", {{"sample_rate", REALTIME_RATE}}}};
    } else if (t == "input_audio_buffer.speech_started" ||
               t == "input_audio_buffer.speech_stopped") {
        m.type = t.substr(strlen("input_audio_buffer."));
    } else if (t == "conversation.item.input_audio_transcription.completed") {
        m.type = "transcript";
        m.j = {{"type", "transcript"}, {"is_final", true}, {"text", str(m.j, "transcript")}};
    } else if (t == "response.output_audio_transcript.delta" || t == "response.output_text.delta") {
        m.type = "text_chunk";
        m.j = {{"type", "text_chunk"}, {"text", str(m.j, "delta")}, {"has_audio", true}};
    } else if (t == "response.output_audio.delta") {
        std::string b64 = str(m.j, "delta");
        size_t pad = b64.ends_with("==") ? 2 : b64.ends_with("=") ? 1 : 0;
        m.binary = true;
        m.bytes = b64.size() / 4 * 3 - pad;
        m.type = "audio";
        m.j = nullptr;
    } else if (t == "response.done") {
        const json &r = m.j["response"];
        std::string text;
        if (r.contains("output") && r["output"].is_array() && !r["output"].empty()) {
            const json &c = r["output"][0]["content"];
            if (c.is_array() && !c.empty())
                text = c[0].contains("transcript") ? str(c[0], "transcript") : str(c[0], "text");
        }
        m.type = str(r, "status") == "cancelled" ? "interrupted" : "response_done";
        m.j = {{"type", m.type}, {"text", text}, {"timings", json::object()}};
    } else if (t == "error") {
        const json &e = m.j["error"];
        m.j = {{"type", "error"}, {"code", str(e, "code")}, {"message", str(e, "message")}};
    }
}

// The bytes of one 20 ms frame: samples [pos, pos + n) of the 16 kHz clip, or for the Realtime
// API the same stretch of its 24 kHz version (a short last frame stays short).
std::string frame_of(const bench_clip &clip, size_t pos, size_t n, bool realtime) {
    if (!realtime) return std::string(reinterpret_cast<const char *>(clip.pcm.data() + pos), n * 2);
    size_t a = std::min(clip.pcm24.size(), pos * REALTIME_RATE / SAMPLE_RATE);
    size_t b = std::min(clip.pcm24.size(), (pos + n) * REALTIME_RATE / SAMPLE_RATE);
    return std::string(reinterpret_cast<const char *>(clip.pcm24.data() + a), (b - a) * 2);
}

struct mic_state {
    const bench_clip *clip = nullptr; // playing now
    size_t pos = 0;
    voice_turn *turn = nullptr; // stamped: the clip's first frame and its end of speech
    bool running = true, active = false;
};

struct run_state {
    run_state(const voice_bench_options &o, const std::vector<bench_clip> &clips,
              const ws_target &target, bench_clock::time_point t0)
        : o(o), clips(clips), target(target), t0(t0) {}

    const voice_bench_options &o;
    const std::vector<bench_clip> &clips;
    ws_target target;
    bench_clock::time_point t0;
    int pid = 0; // the server's, for /proc; 0: none
    std::function<bool()> server_alive;
    std::map<int, thread_cpu> threads_seen; // the server's threads, at the last sample
    notifier events;
    voice_run run;
    int total_turns = 0, ended_turns = 0, warm_turns = 0;
    std::string aborted; // why the run stopped early
    // --sync: every client waits here before each turn
    int clients_active = 0, barrier_arrived = 0, barrier_round = 0;

    double now_ms() const {
        return std::chrono::duration<double, std::milli>(bench_clock::now() - t0).count();
    }
};

awaitable<void> barrier(run_state &rs) {
    int round = rs.barrier_round;
    if (++rs.barrier_arrived >= rs.clients_active) {
        rs.barrier_arrived = 0;
        ++rs.barrier_round;
        rs.events.notify();
        co_return;
    }
    co_await rs.events.wait_until([&] { return rs.barrier_round != round; }, after(FOREVER));
}

void leave_barrier(run_state &rs) {
    --rs.clients_active;
    if (rs.barrier_arrived > 0 && rs.barrier_arrived >= rs.clients_active) {
        rs.barrier_arrived = 0;
        ++rs.barrier_round;
        rs.events.notify();
    }
}

milliseconds paced(double ms, double pace) {
    return pace > 0 ? milliseconds(int64_t(std::lround(ms / pace))) : milliseconds(0);
}

awaitable<void> mic_loop(run_state &rs, ws_connection &c, mic_state &m) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    const double pace = rs.o.pace;
    const auto frame_dt = pace > 0 ? std::chrono::duration_cast<bench_clock::duration>(
                                         std::chrono::duration<double, std::milli>(20.0 / pace))
                                   : bench_clock::duration(0);
    // As fast as possible, silence after a clip still goes out fast for long enough that the
    // VAD can end the turn (min_silence_ms and more); then at real-time pace, to keep the
    // stream alive without flooding the server while it replies.
    const int fast_silence = 100; // frames: 2 s of audio
    int fast_left = 0;
    auto next = bench_clock::now();
    const std::string silence(FRAME_SAMPLES * 2, '\0');
    const bool realtime = rs.run.protocol == "realtime";
    const std::string silence24(FRAME_SAMPLES * REALTIME_RATE / SAMPLE_RATE * 2, '\0');
    while (m.running && c.is_open()) {
        std::string frame = realtime ? silence24 : silence;
        bool first = false, end_of_speech = false;
        if (m.clip) {
            size_t n = std::min(FRAME_SAMPLES, m.clip->pcm.size() - m.pos);
            frame = frame_of(*m.clip, m.pos, n, realtime);
            first = m.pos == 0;
            end_of_speech = m.pos <= m.clip->speech_end && m.clip->speech_end < m.pos + n;
            m.pos += n;
        }
        if (!co_await c.write(std::move(frame), true)) break;
        double t = rs.now_ms();
        if (m.turn && first) m.turn->clip_start = t;
        if (m.turn && end_of_speech) {
            m.turn->at[VOICE_EVENT_END_OF_SPEECH] = t;
            rs.events.notify();
        }
        if (m.clip && m.pos >= m.clip->pcm.size()) {
            m.clip = nullptr;
            fast_left = fast_silence;
            rs.events.notify();
        }
        if (pace > 0) {
            next += frame_dt;
            timer.expires_at(next);
            co_await timer.async_wait(use_nothrow);
        } else if (m.clip || fast_left-- > 0) {
            // Let the other coroutines (this client's control messages) have the socket.
            co_await asio::post(ex, asio::use_awaitable);
        } else {
            next = std::max(next, bench_clock::now()) + milliseconds(20);
            timer.expires_at(next);
            co_await timer.async_wait(use_nothrow);
        }
    }
    m.active = false;
    rs.events.notify();
}

// The first message at or after `from` that matches, or -1.
template <class Pred> long find_message(const ws_connection &c, size_t from, Pred pred) {
    for (size_t i = from; i < c.inbox.size(); ++i)
        if (pred(c.inbox[i])) return long(i);
    return -1;
}

// An error the turn cannot recover from (a TTS failure goes on as text).
bool fatal_error(const ws_message &m) {
    return m.type == "error" && m.j.value("code", "") != "tts_failed";
}

// Waits for a message matching pred at or after `from`; -1 on timeout or a closed connection,
// -2 - i when message i is a fatal error.
awaitable<long> wait_message(run_state &rs, ws_connection &c, size_t from,
                             std::function<bool(const ws_message &)> pred,
                             bench_clock::time_point deadline) {
    long found = -1;
    co_await rs.events.wait_until(
        [&] {
            found = find_message(c, from,
                                 [&](const ws_message &m) { return pred(m) || fatal_error(m); });
            return found >= 0 || !c.is_open();
        },
        deadline);
    if (found >= 0 && fatal_error(c.inbox[size_t(found)]) && !pred(c.inbox[size_t(found)]))
        co_return -2 - found;
    co_return found;
}

std::string describe_failure(const ws_connection &c, long r, const std::string &waiting_for) {
    if (r <= -2) {
        const json &j = c.inbox[size_t(-2 - r)].j;
        return "server error " + j.value("code", "?") + ": " + j.value("message", "");
    }
    return c.is_open() ? "no " + waiting_for + " within the timeout"
                       : "connection closed before " + waiting_for;
}

// One turn: the clip spoken, the reply waited for and reported played out.
awaitable<voice_turn> run_turn(run_state &rs, ws_connection &c, mic_state *mic,
                               const bench_clip &clip, int out_rate) {
    const voice_bench_options &o = rs.o;
    const milliseconds timeout(o.timeout_ms);
    const bool realtime = rs.run.protocol == "realtime";
    voice_turn t;
    t.clip = clip.name;
    t.reference = clip.text;
    t.pause_max_ms = clip.pause_max_ms;
    t.pause_total_ms = clip.pause_total_ms;
    json sent = json::array();
    auto mark = [&](const char *what) {
        sent.push_back({{"t", json_number(rs.now_ms())}, {"sent", what}});
    };
    size_t from = c.inbox.size();
    size_t reply_from = from; // the reply's messages come after this
    std::string fail;
    if (mic) {
        // The previous clip's tail first (its end of turn may come before the clip ends).
        co_await rs.events.wait_until([&] { return !mic->clip || !c.is_open(); }, after(timeout));
        from = reply_from = c.inbox.size();
        mic->pos = 0;
        mic->turn = &t;
        mic->clip = &clip;
        mark("clip");
        milliseconds clip_ms = paced(1000.0 * clip.seconds(), o.pace);
        co_await rs.events.wait_until(
            [&] { return std::isfinite(t.at[VOICE_EVENT_END_OF_SPEECH]) || !c.is_open(); },
            after(clip_ms + timeout));
        if (!std::isfinite(t.at[VOICE_EVENT_END_OF_SPEECH])) {
            fail = c.is_open() ? "the clip was not sent in time" : "connection closed";
        } else {
            mark("end_of_speech");
            // The decision: the first end of turn after the end of speech (ends of turn the
            // VAD found inside the clip, at a long pause, are counted as splits).
            double eos = t.at[VOICE_EVENT_END_OF_SPEECH];
            long i = co_await wait_message(
                rs, c, from,
                [&](const ws_message &m) { return m.type == "speech_stopped" && m.t >= eos; },
                after(timeout));
            if (i < 0) {
                fail = describe_failure(c, i, "speech_stopped");
            } else {
                t.at[VOICE_EVENT_DECISION] = c.inbox[size_t(i)].t;
                for (size_t k = from; k < size_t(i); ++k)
                    if (c.inbox[k].type == "speech_stopped") ++t.splits;
                reply_from = size_t(i) + 1;
            }
        }
    } else {
        mark("start");
        // (The Realtime API's utterance starts with its first append.)
        bool ok = realtime || co_await c.write_json(
                                  {{"type", "start"}, {"sample_rate", SAMPLE_RATE}, {"tts", true}});
        asio::steady_timer timer(co_await asio::this_coro::executor);
        auto next = bench_clock::now();
        const auto frame_dt = std::chrono::duration_cast<bench_clock::duration>(
            std::chrono::duration<double, std::milli>(o.pace > 0 ? 20.0 / o.pace : 0));
        for (size_t pos = 0; ok && pos < clip.pcm.size(); pos += FRAME_SAMPLES) {
            size_t n = std::min(FRAME_SAMPLES, clip.pcm.size() - pos);
            ok = co_await c.write(frame_of(clip, pos, n, realtime), true);
            double now = rs.now_ms();
            if (pos == 0) t.clip_start = now;
            if (pos <= clip.speech_end && clip.speech_end < pos + n) {
                t.at[VOICE_EVENT_END_OF_SPEECH] = now;
                mark("end_of_speech");
            }
            if (o.pace > 0) {
                next += frame_dt;
                timer.expires_at(next);
                co_await timer.async_wait(use_nothrow);
            }
        }
        if (realtime)
            ok = ok && co_await c.write_json({{"type", "input_audio_buffer.commit"}}) &&
                 co_await c.write_json({{"type", "response.create"}});
        else
            ok = ok && co_await c.write_json({{"type", "stop"}});
        t.at[VOICE_EVENT_DECISION] = rs.now_ms();
        mark("stop");
        if (!ok) fail = "connection closed while speaking";
    }

    long i_final = -1, i_end = -1;
    if (fail.empty()) {
        auto deadline = after(timeout);
        i_final = co_await wait_message(
            rs, c, reply_from,
            [](const ws_message &m) {
                return m.type == "transcript" && m.j.value("is_final", false);
            },
            deadline);
        if (i_final < 0) {
            fail = describe_failure(c, i_final, "final transcript");
        } else {
            const ws_message &m = c.inbox[size_t(i_final)];
            t.at[VOICE_EVENT_TRANSCRIPT] = m.t;
            t.transcript = m.j.value("text", "");
            t.wer = word_error_rate(clip.text, t.transcript);
            if (t.transcript.empty()) fail = "nothing recognised (empty final transcript)";
        }
        if (fail.empty()) {
            i_end = co_await wait_message(
                rs, c, size_t(i_final) + 1,
                [](const ws_message &m) {
                    return m.type == "response_done" || m.type == "interrupted";
                },
                deadline);
            if (i_end < 0)
                fail = describe_failure(c, i_end, "response_done");
            else if (c.inbox[size_t(i_end)].type == "interrupted")
                fail = "the reply was interrupted";
        }
    }
    if (fail.empty()) {
        const ws_message &done = c.inbox[size_t(i_end)];
        t.ok = true;
        t.at[VOICE_EVENT_DONE] = done.t;
        t.timings = done.j.value("timings", json::object());
        t.reply = done.j.value("text", "");
        t.speculative = t.timings.value("speculative", false);
        if (t.timings.contains("first_token_ms") && t.timings["first_token_ms"].is_number())
            t.at[VOICE_EVENT_FIRST_TOKEN] =
                t.at[VOICE_EVENT_DECISION] + t.timings["first_token_ms"].get<double>();
        long last_audio_chunk = -1;
        for (size_t k = reply_from; k < size_t(i_end); ++k) {
            const ws_message &m = c.inbox[k];
            if (m.type == "text_chunk" && !std::isfinite(t.at[VOICE_EVENT_FIRST_TEXT])) {
                t.at[VOICE_EVENT_FIRST_TEXT] = m.t;
                t.first_chunk = m.j.value("text", "");
            }
            if (m.binary && !std::isfinite(t.at[VOICE_EVENT_FIRST_AUDIO]))
                t.at[VOICE_EVENT_FIRST_AUDIO] = m.t;
            if (m.type == "text_chunk" && m.j.value("has_audio", false) && k + 1 < c.inbox.size() &&
                c.inbox[k + 1].binary)
                last_audio_chunk = long(k);
        }
        t.engines_ms = engines_after_decision_ms(t.timings, t.first_chunk, t.reply);
        t.overhead_ms = t.since_decision(VOICE_EVENT_FIRST_AUDIO) - t.engines_ms;
        // The reply has played out (as a page reports after its last chunk), so the next
        // turn does not count as talking over it.
        if (last_audio_chunk >= 0 && !realtime) {
            const ws_message &chunk = c.inbox[size_t(last_audio_chunk)];
            double played =
                double(c.inbox[size_t(last_audio_chunk) + 1].bytes) / 2 / out_rate * 1000;
            mark("playback");
            co_await c.write_json({{"type", "playback"},
                                   {"turn_id", chunk.j.value("turn_id", 0)},
                                   {"chunk_id", chunk.j.value("chunk_id", "")},
                                   {"played_ms", std::lround(played)}});
        }
    } else {
        t.error = fail;
        if (c.is_open()) {
            mark("interrupt");
            co_await c.write_json({{"type", realtime ? "response.cancel" : "interrupt"}});
        }
    }
    if (mic && mic->turn == &t) mic->turn = nullptr;

    // Every message of the turn and what was sent, in time order.
    size_t end = i_end >= 0 ? size_t(i_end) + 1 : c.inbox.size();
    json events = std::move(sent);
    for (size_t k = from; k < end; ++k) {
        const ws_message &m = c.inbox[k];
        json e = {{"t", json_number(m.t)}, {"type", m.type}};
        if (m.binary) e["bytes"] = m.bytes;
        if (m.type == "transcript") e["is_final"] = m.j.value("is_final", false);
        if (m.type == "text_chunk") {
            e["chunk_id"] = m.j.value("chunk_id", "");
            e["has_audio"] = m.j.value("has_audio", false);
        }
        if (m.type == "error") e["code"] = m.j.value("code", "");
        events.push_back(std::move(e));
    }
    std::stable_sort(events.begin(), events.end(), [](const json &a, const json &b) {
        return a["t"].is_number() && b["t"].is_number() &&
               a["t"].get<double>() < b["t"].get<double>();
    });
    t.events = std::move(events);
    co_await sleep_for(paced(o.gap_ms, o.pace));
    co_return t;
}

void record_turn(run_state &rs, voice_turn t) {
    ++rs.ended_turns;
    if (rs.pid > 0) {
        proc_sample p = sample_process(rs.pid);
        merge_thread_cpu(rs.threads_seen, rs.pid);
        t.server_cpu_s = p.cpu_s;
        t.server_rss_kb = p.rss_kb;
        if (std::isfinite(p.rss_kb)) {
            if (!(rs.run.peak_rss_kb >= p.rss_kb)) rs.run.peak_rss_kb = p.rss_kb;
            if (rs.ended_turns == rs.warm_turns) rs.run.rss_after_warmup_kb = p.rss_kb;
            rs.run.rss_end_kb = p.rss_kb;
        }
    }
    int step = std::max(1, rs.total_turns / 10);
    if (rs.ended_turns % step == 0 || rs.ended_turns == rs.total_turns)
        std::fprintf(stderr, "  %d client(s): %d/%d turns\n", rs.run.clients, rs.ended_turns,
                     rs.total_turns);
    rs.run.turns.push_back(std::move(t));
}

awaitable<void> client_loop(run_state &rs, int k) {
    const voice_bench_options &o = rs.o;
    auto ex = co_await asio::this_coro::executor;
    const int per_client = o.warmup + o.turns;
    const bool hands_free = o.mode == "hands_free";
    int index = 0, session = 0, connect_failures = 0;
    size_t clip = o.sync ? 0 : size_t(k) % rs.clips.size();
    auto next_clip = [&] { clip = (clip + 1) % rs.clips.size(); };
    while (index < per_client && rs.aborted.empty()) {
        ws_connection c(ex, rs.events, rs.t0, milliseconds(o.timeout_ms));
        const bool realtime = rs.run.protocol == "realtime";
        if (realtime) {
            c.adapt_in = realtime_to_native;
            c.adapt_audio = [](std::string frame) {
                return json{{"type", "input_audio_buffer.append"}, {"audio", base64_encode(frame)}}
                    .dump();
            };
        }
        std::string err = co_await c.open(rs.target, milliseconds(10000));
        if (err.empty() &&
            !co_await rs.events.wait_until([&] { return !c.inbox.empty() || !c.is_open(); },
                                           after(milliseconds(10000))))
            err = "no ready message";
        if (err.empty() && c.inbox.front().type != "ready")
            err = "expected ready, got " + c.inbox.front().type;
        if (!err.empty()) {
            // A failed connection is a failed turn, so that a dead server ends the run.
            if (o.sync) co_await barrier(rs);
            voice_turn t;
            t.client = k;
            t.session = session++;
            t.index = index;
            t.clip = rs.clips[clip].name;
            t.warmup = index < o.warmup;
            t.error = "connect: " + err;
            record_turn(rs, std::move(t));
            ++index;
            next_clip();
            co_await c.close();
            if (rs.server_alive && !rs.server_alive()) rs.aborted = "the server exited";
            if (++connect_failures >= 3) rs.aborted = "cannot connect: " + err;
            co_await sleep_for(milliseconds(500));
            continue;
        }
        connect_failures = 0;
        int out_rate = 22050;
        const json &ready = c.inbox.front().j;
        if (ready.contains("audio_format") && ready["audio_format"].is_object())
            out_rate = ready["audio_format"].value("sample_rate", 22050);
        mic_state mic;
        if (realtime) {
            json td = hands_free ? json{{"type", "server_vad"}} : json(nullptr);
            co_await c.write_json(
                {{"type", "session.update"},
                 {"session",
                  {{"type", "realtime"},
                   {"audio",
                    {{"input",
                      {{"format", {{"type", "audio/pcm"}, {"rate", REALTIME_RATE}}},
                       {"turn_detection", td}}}}}}}});
        }
        if (hands_free && realtime) {
            mic.active = true;
            asio::co_spawn(ex, mic_loop(rs, c, mic), asio::detached);
        } else if (hands_free) {
            co_await c.write_json({{"type", "start"},
                                   {"sample_rate", SAMPLE_RATE},
                                   {"mode", "hands_free"},
                                   {"tts", true}});
            mic.active = true;
            asio::co_spawn(ex, mic_loop(rs, c, mic), asio::detached);
        }
        for (int s = 0; index < per_client && rs.aborted.empty() &&
                        (o.turns_per_session <= 0 || s < o.turns_per_session);
             ++s) {
            if (o.sync) co_await barrier(rs);
            voice_turn t =
                co_await run_turn(rs, c, hands_free ? &mic : nullptr, rs.clips[clip], out_rate);
            t.client = k;
            t.session = session;
            t.index = index;
            t.warmup = index < o.warmup;
            record_turn(rs, std::move(t));
            ++index;
            next_clip();
            if (!c.is_open()) break;
        }
        mic.running = false;
        co_await rs.events.wait_until([&] { return !mic.active; }, after(milliseconds(3000)));
        co_await c.close();
        // close() ended the writes the mic may have been waiting on.
        co_await rs.events.wait_until([&] { return !mic.active; }, after(milliseconds(3000)));
        ++session;
        if (!c.is_open() && rs.server_alive && !rs.server_alive()) rs.aborted = "the server exited";
    }
    leave_barrier(rs);
}

// One run with o.clients.front() clients on a fresh event loop.
voice_run run_clients(const voice_bench_options &o, const std::vector<bench_clip> &clips,
                      const ws_target &target, int pid, bench_clock::time_point t0,
                      const std::function<bool()> &server_alive, std::string *aborted) {
    asio::io_context io;
    run_state rs(o, clips, target, t0);
    const int n = o.clients.front();
    rs.pid = pid;
    rs.server_alive = server_alive;
    rs.run.clients = n;
    rs.run.protocol = o.protocol;
    rs.run.push_to_talk = o.mode == "push_to_talk";
    rs.clients_active = n;
    rs.total_turns = n * (o.warmup + o.turns);
    // Memory after warm-up: after the first 10% of the turns, at least 5.
    rs.warm_turns = std::max(5, int(std::ceil(0.1 * rs.total_turns)));
    rs.run.rss_warmup_turns = rs.warm_turns;
    proc_sample before = sample_process(pid), self_before = sample_process(getpid());
    std::map<int, thread_cpu> threads_before = thread_cpu_sample(pid);
    rs.threads_seen = threads_before;
    double busy_before = machine_busy_s();
    auto wall0 = bench_clock::now();
    for (int k = 0; k < n; ++k)
        asio::co_spawn(io, client_loop(rs, k), [&rs](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception &x) {
                rs.aborted = std::string("a client failed: ") + x.what();
            }
        });
    // The clients' thread is a browser's, not the server: woken by a message, it takes a core at
    // once (as the server's I/O threads do), so that its own wait for the next tick on the busy
    // cores is not what the run measures. Its own thread, so that the policy ends with the run.
    std::thread([&] {
        set_thread_name("bench-clients");
        set_thread_slice(o.client_slice_us);       // checked in voice_bench_main
        set_thread_realtime(o.client_rt_priority); // granted there (0 if not)
        io.run();
    }).join();
    rs.run.wall_s = ms_since(wall0) / 1000;
    proc_sample end = sample_process(pid);
    rs.run.cpu_s = end.cpu_s - before.cpu_s;
    merge_thread_cpu(rs.threads_seen, pid);
    std::map<std::string, double> by_name;
    for (auto &[tid, t] : rs.threads_seen) {
        auto before = threads_before.find(tid);
        by_name[t.name] += t.cpu_s - (before != threads_before.end() ? before->second.cpu_s : 0.0);
    }
    for (auto &[name, used] : by_name)
        if (used > 0) rs.run.cpu_by_thread.emplace_back(name, used);
    std::ranges::sort(rs.run.cpu_by_thread, [](auto &a, auto &b) { return a.second > b.second; });
    rs.run.machine_busy_s = machine_busy_s() - busy_before;
    rs.run.client_cpu_s = sample_process(getpid()).cpu_s - self_before.cpu_s;
    rs.run.hwm_kb = end.hwm_kb;
    // The growth check needs turns after the warm-up sample.
    if (rs.ended_turns <= rs.warm_turns) rs.run.rss_after_warmup_kb = NO_VALUE;
    *aborted = rs.aborted;
    return std::move(rs.run);
}

// --- printing ---

// Pads to `width` columns, counting UTF-8 characters (the arrows), not bytes.
std::string pad(const std::string &s, size_t width) {
    size_t cols = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++cols;
    return s + std::string(cols < width ? width - cols : 0, ' ');
}

std::string fmt(double v, int decimals = 1) {
    if (!std::isfinite(v)) return "-";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

json cpu_by_thread_json(const voice_run &run) {
    json j = json::object();
    for (const auto &[name, cpu] : run.cpu_by_thread)
        j[name] = json_number(cpu);
    return j;
}

const char *OVERHEAD_HOW =
    "decision → first audio on the client's clock minus the engines' time after the decision "
    "(server timings: transcript_ms + llm_queue_ms + llm_first_token_ms + the rest of the first "
    "phrase's generation, estimated from its share of the reply's bytes at the reply's ms per "
    "token, + tts_first_ms; for a reply started speculatively before the decision only the "
    "part of that chain after the decision: first_token_ms + the rest of the first phrase + "
    "tts_first_ms, at least 0)";

void print_run(const voice_run &run, const voice_bench_options &o, int cores) {
    voice_run_summary s = summarize_run(run);
    std::printf("\n== %d client%s%s: %d turns (%d counted, %d warm-up, %d failed) in %.1f s\n",
                run.clients, run.clients == 1 ? "" : "s",
                run.protocol == "realtime" ? " over the OpenAI Realtime API" : "", s.turns,
                s.counted, run.clients * o.warmup, s.failed, run.wall_s);
    if (const stage_stats *w = s.stage("end_of_speech_to_first_audio"))
        std::printf("%s: median %s ms, p95 %s ms (what the user waits)\n", w->label.c_str(),
                    fmt(w->median).c_str(), fmt(w->p95).c_str());
    std::printf("%s%8s%10s%10s%10s\n", pad("stage (ms)", 44).c_str(), "n", "median", "p95", "max");
    for (const auto &st : s.stages)
        std::printf("%s%8d%10s%10s%10s\n", pad(st.label, 44).c_str(), st.n, fmt(st.median).c_str(),
                    fmt(st.p95).c_str(), fmt(st.max).c_str());
    if (const stage_stats *a = s.stage("first_audio"))
        std::printf("decision → first audio: median %s, p95 %s\n", fmt(a->median).c_str(),
                    fmt(a->p95).c_str());
    std::printf("Parley's own overhead: median %s ms (engines after the decision: median %s ms)\n",
                fmt(s.overhead_median).c_str(), fmt(s.engines_median).c_str());
    if (std::isfinite(run.cpu_s)) {
        std::printf("server: CPU %s s per turn, %s cores (of %d) over the run; peak RSS %s MiB "
                    "(VmHWM; highest sampled VmRSS %s MiB)\n",
                    fmt(s.cpu_s_per_turn, 3).c_str(), fmt(s.cores, 2).c_str(), cores,
                    fmt(run.hwm_kb / 1024).c_str(), fmt(run.peak_rss_kb / 1024).c_str());
        if (!run.cpu_by_thread.empty()) {
            std::printf("server CPU by thread (s):");
            for (const auto &[name, cpu] : run.cpu_by_thread)
                std::printf(" %s %s", name.c_str(), fmt(cpu, 2).c_str());
            std::printf("\n");
        }
        if (std::isfinite(s.rss_growth_pct))
            std::printf("memory: RSS %s MiB after %d turns (warm-up), %s MiB after the last: "
                        "%+.1f%% (target ≤ 10%% over 500 turns)\n",
                        fmt(run.rss_after_warmup_kb / 1024).c_str(), run.rss_warmup_turns,
                        fmt(run.rss_end_kb / 1024).c_str(), s.rss_growth_pct);
        else
            std::printf("memory: too few turns for the growth check (needs more than %d)\n",
                        run.rss_warmup_turns);
    }
    if (std::isfinite(s.machine_cores))
        std::printf("machine: %s of %d cores busy over the run (server %s, this benchmark %s, "
                    "other processes %s)\n",
                    fmt(s.machine_cores, 2).c_str(), cores, fmt(s.cores, 2).c_str(),
                    fmt(s.client_cores, 2).c_str(), fmt(s.other_cores, 2).c_str());
    std::printf("mean WER %s; speculative starts %d/%d; VAD ends of turn inside a clip %d\n",
                fmt(s.mean_wer, 2).c_str(), s.speculative, s.counted, s.splits);
    // Pauses inside the user's speech, and whether an end of turn fired in one.
    double longest = 0;
    int paused = 0;
    for (const auto &t : run.turns)
        if (t.counted() && std::isfinite(t.pause_max_ms)) {
            longest = std::max(longest, t.pause_max_ms);
            if (t.pause_max_ms >= 200) ++paused;
        }
    std::printf("pauses inside the speech: the longest %s ms; %d turn(s) with a pause of 200 ms or "
                "more; %d turn(s) cut by an end of turn inside the speech\n",
                fmt(longest, 0).c_str(), paused, s.splits_turns);
    int shown = 0;
    for (const auto &t : run.turns)
        if (!t.ok && shown++ < 5)
            std::printf("  failed: client %d turn %d (%s): %s\n", t.client, t.index, t.clip.c_str(),
                        t.error.c_str());
    std::fflush(stdout);
}

// --- the bare engines ---

// A number of the turn's response_done.timings, NaN when absent.
double timing(const voice_turn &t, const char *key) {
    auto it = t.timings.is_object() ? t.timings.find(key) : t.timings.end();
    return it != t.timings.end() && it->is_number() ? it->get<double>() : NO_VALUE;
}

// The word error rate of the turns' transcripts (mean per clip, then over the clips) next to the
// bare CLI's on the same files.
void bare_asr_wer(const std::string &tool, const std::vector<bench_clip> &clips,
                  const voice_run &run, voice_report &rep, json &details) {
    double parley_sum = 0, bare_sum = 0;
    int n = 0;
    json per_clip = json::object();
    for (const auto &c : clips) {
        std::vector<double> w;
        for (const auto &t : run.turns)
            if (t.counted() && t.clip == c.name && std::isfinite(t.wer)) w.push_back(t.wer);
        if (w.empty() || c.text.empty()) continue;
        double p = 0;
        for (double x : w)
            p += x / double(w.size());
        double b = word_error_rate(c.text, pocketsphinx_cli_transcript(tool, c.path));
        per_clip[c.name] = {{"parley_wer", json_number(p)}, {"bare_wer", json_number(b)}};
        parley_sum += p;
        bare_sum += b;
        ++n;
    }
    if (n == 0) return;
    for (const auto &[clip, w] : per_clip.items())
        std::fprintf(stderr, "bare: WER on clip %s: Parley %.3f, pocketsphinx single %.3f\n",
                     clip.c_str(), w["parley_wer"].get<double>(), w["bare_wer"].get<double>());
    rep.bare.push_back({"ASR word error rate, mean of the clips (a rate, not ms)", parley_sum / n,
                        bare_sum / n,
                        "Parley: the turns' final transcripts; bare: pocketsphinx single on the "
                        "same files"});
    details["asr_wer"] = per_clip;
}

void bare_asr(const server_facts &sf, const std::vector<bench_clip> &clips, const voice_run &run,
              voice_report &rep, json &details) {
    if (sf.asr != "pocketsphinx") {
        rep.notes.push_back("bare ASR skipped: the server runs " + sf.asr + ", not pocketsphinx");
        return;
    }
    std::string tool = find_tool("pocketsphinx");
    if (tool.empty()) {
        rep.notes.push_back("bare ASR skipped: no pocketsphinx CLI on PATH");
        return;
    }
    bare_asr_wer(tool, clips, run, rep, details);
    // A speculative turn's asr_ms holds only the work after the speculative start.
    std::map<std::string, std::vector<double>> per_clip;
    for (const auto &t : run.turns)
        if (t.counted() && !t.speculative && std::isfinite(timing(t, "asr_ms")))
            per_clip[t.clip].push_back(timing(t, "asr_ms"));
    if (per_clip.empty()) {
        rep.notes.push_back("bare ASR skipped: every turn started speculatively, and then asr_ms "
                            "holds only the recognition after the speculative start (compare "
                            "with --mode push_to_talk)");
        return;
    }
    double parley_sum = 0;
    int parley_n = 0;
    json parley = json::object();
    for (const auto &[clip, v] : per_clip) {
        parley_sum += median(v);
        ++parley_n;
        parley[clip] = json_number(median(v));
    }
    std::vector<std::string> files; // the clips Parley heard, the same for the CLI
    for (const auto &c : clips)
        if (per_clip.count(c.name)) files.push_back(c.path);
    std::fprintf(stderr, "bare: pocketsphinx CLI on %zu clips...\n", files.size());
    // All clips in one process, once and three times: the difference is their decoding alone.
    auto make = [&](int copies) {
        std::vector<std::string> argv = pocketsphinx_cli_command(tool);
        for (int k = 0; k < copies; ++k)
            argv.insert(argv.end(), files.begin(), files.end());
        return argv;
    };
    double all = cli_ms_per_copy(make, 0, 1, nullptr, 3);
    double bare = all / double(files.size());
    double p = parley_n ? parley_sum / parley_n : NO_VALUE;
    rep.bare.push_back({"ASR pocketsphinx, work per clip (mean of the clips)", p, bare,
                        "Parley: timings.asr_ms (median per clip; hands-free: the VAD's "
                        "utterance, turns without a speculative start: the live pass for partials "
                        "and the end-of-utterance decode); bare: pocketsphinx single on the whole "
                        "file, (wall of 3 copies - wall of 1) / 2"});
    details["asr"] = {{"parley_asr_ms_per_clip", parley}, {"cli_ms_per_clip", json_number(bare)}};
}

void bare_tts(const server_facts &sf, const voice_run &run, const std::string &tmp,
              voice_report &rep, json &details) {
    if (sf.tts != "espeak") {
        rep.notes.push_back("bare TTS skipped: the server runs " + sf.tts + ", not espeak-ng");
        return;
    }
    std::string tool = find_tool("espeak-ng");
    if (tool.empty()) {
        rep.notes.push_back("bare TTS skipped: no espeak-ng CLI on PATH");
        return;
    }
    std::map<std::string, std::vector<double>> by_text;
    for (const auto &t : run.turns) {
        if (!t.counted() || t.first_chunk.find_first_not_of(" \t\n") == std::string::npos) continue;
        if (timing(t, "tts_calls") > 0 && std::isfinite(timing(t, "tts_first_ms")))
            by_text[t.first_chunk].push_back(timing(t, "tts_first_ms"));
    }
    if (by_text.empty()) {
        rep.notes.push_back("bare TTS skipped: no spoken first phrase in the run");
        return;
    }
    std::fprintf(stderr, "bare: espeak-ng CLI on %zu first phrases...\n",
                 std::min<size_t>(8, by_text.size()));
    std::vector<double> parley, bare;
    json rows = json::array();
    int n = 0;
    for (const auto &[text, v] : by_text) {
        if (n++ >= 8) break;
        auto make = [&](int copies) {
            std::string many;
            for (int k = 0; k < copies; ++k)
                many += (k ? " " : "") + text;
            return std::vector<std::string>{
                tool, "-v", sf.voice, "-s", std::to_string(sf.rate_wpm), "-w", tmp + "/espeak.wav",
                many};
        };
        double b = cli_ms_per_copy(make, 1, 3);
        parley.push_back(median(v));
        bare.push_back(b);
        rows.push_back(
            {{"text", text}, {"parley_ms", json_number(median(v))}, {"cli_ms", json_number(b)}});
    }
    rep.bare.push_back({"TTS espeak-ng, first phrase to audio (median of phrases)", median(parley),
                        median(bare),
                        "Parley: timings.tts_first_ms (synthesis and resampling); bare: the CLI "
                        "with the same voice and rate, (wall of 5 copies - wall of 1) / 4"});
    details["tts"] = rows;
}

void bare_llm(const voice_bench_options &o, const server_facts &sf, const voice_run &run,
              voice_report &rep, json &details) {
    std::string tool = find_tool("llama-server");
    if (tool.empty() || sf.model.empty() || !fs::exists(sf.model)) {
        rep.notes.push_back("bare LLM skipped: " +
                            std::string(tool.empty()       ? "no llama-server on PATH"
                                        : sf.model.empty() ? "the server's model is not known "
                                                             "(give it after --)"
                                                           : "no file " + sf.model));
        return;
    }
    std::vector<const voice_turn *> turns;
    for (const auto &t : run.turns)
        if (t.client == 0) turns.push_back(&t);
    std::sort(turns.begin(), turns.end(),
              [](const voice_turn *a, const voice_turn *b) { return a->index < b->index; });
    if (int(turns.size()) > o.bare_turns) turns.resize(size_t(o.bare_turns));
    int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    llama_server_options so;
    so.tool = tool;
    so.model = sf.model;
    so.threads = sf.threads > 0 ? sf.threads : std::max(1, cores / 2);
    so.threads_batch = sf.threads_batch > 0 ? sf.threads_batch : cores;
    so.context = sf.context;
    so.batch = sf.batch;
    so.port = free_port();
    std::fprintf(stderr, "bare: llama-server replaying %zu turns...\n", turns.size());
    std::string why;
    int pid = start_llama_server(so, &why);
    if (pid <= 0) {
        rep.notes.push_back("bare LLM skipped: llama-server " + why);
        return;
    }
    std::vector<double> parley_first, parley_llm, bare;
    json rows = json::array();
    json history = json::array();
    int session = -1;
    for (const voice_turn *t : turns) {
        if (t->session != session) {
            history = json::array(); // a new session starts a new conversation
            session = t->session;
        }
        if (!t->ok) continue; // no reply: not in the history either
        json messages = json::array({{{"role", "system"}, {"content", sf.system_prompt}}});
        for (const auto &m : history)
            messages.push_back(m);
        messages.push_back({{"role", "user"}, {"content", t->transcript}});
        double first = NO_VALUE;
        // A few tokens, read to the end: the next request must not wait for this one.
        http_request(so.port, "POST", "/v1/chat/completions", chat_request_body(messages, 8),
                     &first, false);
        history.push_back({{"role", "user"}, {"content", t->transcript}});
        history.push_back({{"role", "assistant"}, {"content", t->reply}});
        if (t->warmup) continue;
        // A speculative reply's first token came before the decision: 0 for the user.
        double p = std::max(0.0, t->since_decision(VOICE_EVENT_FIRST_TOKEN));
        double q = timing(*t, "llm_queue_ms") + timing(*t, "llm_first_token_ms");
        parley_first.push_back(p);
        parley_llm.push_back(q);
        bare.push_back(first);
        rows.push_back({{"index", t->index},
                        {"parley_decision_to_first_token_ms", json_number(p)},
                        {"parley_llm_submit_to_first_token_ms", json_number(q)},
                        {"llama_server_first_token_ms", json_number(first)}});
    }
    stop_process(pid);
    std::string n = std::to_string(bare.size()) + (bare.size() == 1 ? " turn" : " turns");
    rep.bare.push_back({"LLM first token after the user's turn (median of " + n + ")",
                        median(parley_first), median(bare),
                        "Parley: decision → first token (0 when a speculative start had it "
                        "before); bare: llama-server, same model, threads and conversation, "
                        "prompt cache on, request → first streamed token"});
    rep.bare.push_back({"LLM alone: submit → first token (median of " + n + ")", median(parley_llm),
                        median(bare),
                        "Parley: llm_queue_ms + llm_first_token_ms (its prompt was mostly "
                        "evaluated while the user spoke); bare: as above"});
    details["llm"] = {{"model", sf.model},
                      {"threads", so.threads},
                      {"threads_batch", so.threads_batch},
                      {"context", so.context},
                      {"turns", rows}};
}

// --- output ---

json turn_json(const voice_turn &t) {
    json at = json::object(), rel = json::object();
    for (int e = 0; e < VOICE_EVENT_COUNT; ++e) {
        at[voice_event_key(e)] = json_number(t.at[e]);
        rel[voice_event_key(e)] = json_number(t.since_decision(e));
    }
    return {{"client", t.client},
            {"session", t.session},
            {"index", t.index},
            {"clip", t.clip},
            {"warmup", t.warmup},
            {"ok", t.ok},
            {"error", t.error},
            {"at_ms", at},
            {"from_decision_ms", rel},
            {"clip_start_ms", json_number(t.clip_start)},
            {"timings", t.timings},
            {"transcript", t.transcript},
            {"reference", t.reference},
            {"wer", json_number(t.wer)},
            {"first_chunk", t.first_chunk},
            {"reply", t.reply},
            {"speculative", t.speculative},
            {"splits", t.splits},
            {"end_of_turn_inside", t.splits > 0},
            {"pause_max_ms", json_number(t.pause_max_ms)},
            {"pause_total_ms", json_number(t.pause_total_ms)},
            {"engines_after_decision_ms", json_number(t.engines_ms)},
            {"overhead_ms", json_number(t.overhead_ms)},
            {"server_cpu_s", json_number(t.server_cpu_s)},
            {"server_rss_kb", json_number(t.server_rss_kb)},
            {"events", t.events}};
}

json run_json(const voice_run &run) {
    voice_run_summary s = summarize_run(run);
    json stages = json::object();
    for (const auto &st : s.stages)
        stages[st.key] = {{"label", st.label},
                          {"n", st.n},
                          {"median", json_number(st.median)},
                          {"p95", json_number(st.p95)},
                          {"max", json_number(st.max)}};
    json turns = json::array();
    for (const auto &t : run.turns)
        turns.push_back(turn_json(t));
    return {{"clients", run.clients},
            {"protocol", run.protocol},
            {"wall_s", json_number(run.wall_s)},
            {"summary",
             {{"stages_ms", stages},
              {"turns", s.turns},
              {"counted", s.counted},
              {"failed", s.failed},
              {"speculative", s.speculative},
              {"mean_wer", json_number(s.mean_wer)},
              {"overhead_median_ms", json_number(s.overhead_median)},
              {"engines_after_decision_median_ms", json_number(s.engines_median)},
              {"server_cpu_s", json_number(run.cpu_s)},
              {"server_cpu_s_by_thread", cpu_by_thread_json(run)},
              {"machine_busy_cores", json_number(s.machine_cores)},
              {"bench_client_cores", json_number(s.client_cores)},
              {"other_processes_cores", json_number(s.other_cores)},
              {"server_cpu_s_per_turn", json_number(s.cpu_s_per_turn)},
              {"server_cores", json_number(s.cores)},
              {"server_vmhwm_kb", json_number(run.hwm_kb)},
              {"server_peak_rss_kb", json_number(run.peak_rss_kb)},
              {"rss_warmup_turns", run.rss_warmup_turns},
              {"rss_after_warmup_kb", json_number(run.rss_after_warmup_kb)},
              {"rss_end_kb", json_number(run.rss_end_kb)},
              {"rss_growth_pct", json_number(s.rss_growth_pct)}}},
            {"turns", turns}};
}

bool write_text(const std::string &path, const std::string &text) {
    std::error_code ec;
    if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path(), ec);
    std::ofstream f(path, std::ios::binary);
    f << text;
    f.close();
    if (!f) {
        std::fprintf(stderr, "parley bench: cannot write %s\n", path.c_str());
        return false;
    }
    return true;
}

std::string log_value(const std::string &log, const std::string &key) {
    std::regex re("listening on [^\\n]* " + key + "=(\\S+)");
    std::smatch m;
    return std::regex_search(log, m, re) ? std::string(m[1]) : std::string();
}

} // namespace

int voice_bench_main(const std::vector<std::string> &args) {
    voice_bench_options o;
    bool help = false;
    std::string err = parse_options(args, o, help);
    if (int rc = bench_cli_exit(help, err, USAGE, "parley bench: "); rc >= 0) return rc;
    // The clients' thread's scheduling, tried once here: -1 is a quiet "where allowed".
    std::thread([&o] {
        if (std::string e = set_thread_slice(o.client_slice_us); !e.empty())
            std::fprintf(stderr, "parley bench: no %d us slice for the clients' thread (%s)\n",
                         o.client_slice_us, e.c_str());
        realtime_grant rt = request_thread_realtime(o.client_rt_priority);
        if (rt.priority == 0 && o.client_rt_priority > 0)
            std::fprintf(stderr,
                         "parley bench: no real-time priority %d for the clients' thread (%s)\n",
                         rt.tried, rt.error.c_str());
        o.client_rt_priority = rt.priority;
    }).join();
    std::vector<bench_clip> clips;
    if (err = load_clips(o.audio_dir, clips); !err.empty()) {
        std::fprintf(stderr, "parley bench: %s\n", err.c_str());
        return 2;
    }
    // What the server runs with: its own option parser over the options after --.
    app_config cfg;
    std::vector<std::string> positional;
    if (err = parse_args(cfg, o.server_args, &positional); !err.empty()) {
        std::fprintf(stderr, "parley bench: server options: %s\n", err.c_str());
        return 2;
    }
    std::vector<std::string> server_args = o.server_args;
    if (o.url.empty() && cfg.llm.model_path.empty() && cfg.llm.urls.empty() &&
        cfg.profile.empty()) {
        const char *env = std::getenv("PARLEY_TEST_MODEL");
        std::string model = env && *env ? env : "../shared/models/stories260K.gguf";
        if (fs::exists(model)) {
            server_args.insert(server_args.begin(), {"--model", model});
            cfg.llm.model_path = model;
        }
    }
    server_facts sf;
    sf.model = cfg.llm.model_path;
    sf.asr = cfg.asr.engine;
    sf.tts = cfg.tts.engine;
    sf.voice = cfg.session.tts.voice;
    sf.rate_wpm = cfg.session.tts.rate_wpm;
    sf.system_prompt = cfg.session.system_prompt;
    sf.context = cfg.llm.context;
    sf.threads = cfg.llm.threads;
    sf.threads_batch = cfg.llm.threads_batch;
    sf.batch = cfg.llm.batch;
    sf.max_tokens = cfg.session.max_tokens;

    ws_target target;
    target.api_key = o.api_key.empty() ? cfg.server.api_key : o.api_key;
    server_process srv;
    std::string tmp;
    int pid = o.pid;
    std::string server_line;
    if (o.url.empty()) {
        char tmpl[] = "/tmp/parley-bench-XXXXXX";
        tmp = mkdtemp(tmpl) ? tmpl : "";
        if (tmp.empty()) {
            std::fprintf(stderr, "parley bench: cannot make a temporary folder\n");
            return 1;
        }
        std::vector<std::string> argv = {"serve", "--port", "0", "--db", tmp + "/bench.db"};
        argv.insert(argv.end(), server_args.begin(), server_args.end());
        std::string exe = fs::read_symlink("/proc/self/exe").string();
        std::fprintf(stderr, "parley bench: starting %s\n",
                     join_command(std::vector<std::string>{exe}).c_str());
        std::string why;
        if (!srv.start(exe, argv, std::chrono::seconds(120), &why)) {
            std::fprintf(stderr, "parley bench: the server did not start (%s); its log ends:\n%s\n",
                         why.c_str(), srv.log_tail(30).c_str());
            std::error_code ec;
            fs::remove_all(tmp, ec);
            return 1;
        }
        target.host = "127.0.0.1";
        target.port = std::to_string(srv.port());
        target.path = "/ws";
        pid = srv.pid();
        std::string log = srv.log();
        if (std::string m = log_value(log, "model"); !m.empty() && m != "-") sf.model = m;
        if (std::string a = log_value(log, "asr"); !a.empty()) sf.asr = a;
        if (std::string t = log_value(log, "tts"); !t.empty()) sf.tts = t;
        server_line = "server: parley serve (spawned, pid " + std::to_string(pid) + ", port " +
                      target.port + ") " + join_command(server_args);
    } else {
        if (err = parse_url(o.url, target); !err.empty()) {
            std::fprintf(stderr, "parley bench: %s\n%s", err.c_str(), USAGE);
            return 2;
        }
        server_line = "server: " + o.url + (pid > 0 ? " (pid " + std::to_string(pid) + ")" : "");
    }
    auto alive = [&] { return o.url.empty() ? srv.alive() : true; };

    voice_report rep;
    std::string pace = o.pace == 1   ? "real time"
                       : o.pace == 0 ? "as fast as possible (pace 0)"
                                     : "pace " + fmt(o.pace, 2) + "x real time";
    rep.title = o.mode + ", " + pace + ", " + std::to_string(o.turns) + " turns per client + " +
                std::to_string(o.warmup) + " warm-up" + (o.sync ? ", all clients in sync" : "") +
                ", model " + (sf.model.empty() ? "-" : fs::path(sf.model).filename().string());
    int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    rep.setting_lines = {
        server_line,
        "clips: LibriVox " + std::to_string(clips.size()) +
            " clips in 20 ms frames, each client starting at its own clip" +
            (o.sync ? " (--sync: the same clip at the same instant)" : "") + "; gap " +
            std::to_string(o.gap_ms) + " ms; timeout " + std::to_string(o.timeout_ms) + " ms" +
            (o.turns_per_session > 0
                 ? "; a new session every " + std::to_string(o.turns_per_session) + " turns"
                 : ""),
        "machine: " + std::to_string(cores) + " cores"};
    if (o.protocol == "realtime")
        rep.notes.push_back(
            "Over the Realtime API each client sends its clips at 24 kHz (each clip "
            "resampled once beforehand, as a client capturing at 24 kHz has it), 20 ms a "
            "frame, base64 in input_audio_buffer.append events; the server resamples them to "
            "16 kHz as it does any other rate, and its turn detection is server_vad with the "
            "server's own settings.");
    rep.notes.push_back("Times are on the client's steady clock. The decision is the receipt of "
                        "speech_stopped (hands-free) or the send of stop (push-to-talk). The "
                        "first token is placed at the decision + the server's "
                        "response_done.timings.first_token_ms (measured by the server from "
                        "its own decision).");
    rep.notes.push_back(std::string("Parley's own overhead = ") + OVERHEAD_HOW + ".");
    if (o.client_rt_priority > 0)
        rep.notes.push_back("The clients' thread runs under SCHED_FIFO at priority " +
                            std::to_string(o.client_rt_priority) +
                            " (--client-rt-priority): its own wake-ups on the busy cores are "
                            "not measured.");
    else
        rep.notes.push_back("The clients' thread asks for a " + std::to_string(o.client_slice_us) +
                            " us scheduler slice (real-time priority was not granted): its own "
                            "wake-ups on the busy cores can add a scheduler tick.");
    if (o.pace == 0)
        rep.notes.push_back("Pace 0: audio is sent as fast as possible, so the server decodes "
                            "a backlog at the decision; the latencies are not a real-time "
                            "user's. The run is for throughput and memory.");

    std::printf("parley bench: %s\n%s\n", rep.title.c_str(), server_line.c_str());
    std::fflush(stdout);
    auto t0 = bench_clock::now();
    bool server_died = false;
    json protocol_ratios = json::object();
    for (int n : o.clients) {
        for (const char *protocol : {"native", "realtime"}) {
            if (protocol != o.protocol && std::string(protocol) == "realtime") continue;
            std::fprintf(stderr, "parley bench: %d client(s), %s protocol...\n", n, protocol);
            voice_bench_options one = o;
            one.clients = {n};
            one.protocol = protocol;
            ws_target to = target;
            if (one.protocol == "realtime") to.path = "/v1/realtime";
            std::string aborted;
            voice_run run = run_clients(one, clips, to, pid, t0, alive, &aborted);
            print_run(run, o, cores);
            if (one.protocol == "realtime" && !rep.runs.empty()) {
                // The same clients over both protocols: what the Realtime API's codec costs.
                voice_run_summary native = summarize_run(rep.runs.back());
                voice_run_summary realtime = summarize_run(run);
                const stage_stats *a = native.stage("end_of_speech_to_first_audio");
                const stage_stats *b = realtime.stage("end_of_speech_to_first_audio");
                if (a && b && a->n > 0 && b->n > 0) {
                    double r = b->median / a->median;
                    protocol_ratios[std::to_string(n)] = json_number(r);
                    std::printf("%d client(s): end of speech -> first audio, Realtime API / native "
                                "protocol = %s (median %s / %s ms; p95 %s / %s ms)\n",
                                n, fmt(r, 3).c_str(), fmt(b->median).c_str(),
                                fmt(a->median).c_str(), fmt(b->p95).c_str(), fmt(a->p95).c_str());
                }
            }
            rep.runs.push_back(std::move(run));
            if (!aborted.empty()) {
                std::printf("run stopped early: %s\n", aborted.c_str());
                rep.notes.push_back("run with " + std::to_string(n) +
                                    " clients stopped early: " + aborted);
            }
            if (!alive() && o.url.empty()) {
                std::fprintf(stderr, "parley bench: the server ended (%s); its log ends:\n%s\n",
                             srv.how_it_ended().c_str(), srv.log_tail(30).c_str());
                rep.notes.push_back("the server ended during the run (" + srv.how_it_ended() + ")");
                server_died = true;
                break;
            }
        }
        if (server_died) break;
    }
    // The ratio of the 4-client (or any other) run's p95 to the 1-client run's.
    json ratios = json::object();
    double p95_one = NO_VALUE;
    // (A summary's stages live as long as the summary: keep it, not just the pointer.)
    for (const auto &run : rep.runs) {
        if (run.clients != 1 || run.protocol != "native") continue;
        voice_run_summary s = summarize_run(run);
        if (const stage_stats *a = s.stage("first_audio")) p95_one = a->p95;
    }
    for (const auto &run : rep.runs) {
        if (run.clients == 1 || !std::isfinite(p95_one) || run.protocol != "native") continue;
        voice_run_summary s = summarize_run(run);
        const stage_stats *a = s.stage("first_audio");
        if (!a) continue;
        double r = a->p95 / p95_one;
        ratios[std::to_string(run.clients)] = json_number(r);
        std::printf("%d-client p95 / 1-client p95 = %s (decision → first audio; target ≤ 2)\n",
                    run.clients, fmt(r, 2).c_str());
    }
    std::string server_log_tail = srv.log_tail(40);
    srv.stop(); // the bare engines get the machine to themselves
    // The whole log beside the JSON (with `-- --log-level debug`: every prompt and slow step).
    std::string log_path = o.out.substr(0, o.out.rfind(".json")) + ".server.log";
    if (o.url.empty() && write_text(log_path, srv.log()))
        std::printf("server log: %s\n", log_path.c_str());

    json bare_details = json::object();
    if (o.bare && !rep.runs.empty() && !server_died) {
        const voice_run &first = rep.runs.front();
        std::string scratch = tmp;
        if (scratch.empty()) {
            char tmpl[] = "/tmp/parley-bench-XXXXXX";
            scratch = mkdtemp(tmpl) ? tmpl : "/tmp";
        }
        bare_asr(sf, clips, first, rep, bare_details);
        bare_tts(sf, first, scratch, rep, bare_details);
        bare_llm(o, sf, first, rep, bare_details);
        std::error_code ec;
        if (tmp.empty() && scratch != "/tmp") fs::remove_all(scratch, ec);
        std::printf("\nagainst the bare engines (%d-client run; Parley / bare):\n", first.clients);
        std::printf("%s%12s%12s%8s\n", pad("stage", 60).c_str(), "Parley ms", "bare ms", "ratio");
        for (const auto &b : rep.bare) {
            int decimals = b.stage.find("error rate") != std::string::npos ? 3 : 1;
            std::printf("%s%12s%12s%8s\n", pad(b.stage, 60).c_str(),
                        fmt(b.parley_ms, decimals).c_str(), fmt(b.bare_ms, decimals).c_str(),
                        fmt(b.parley_ms / b.bare_ms, 2).c_str());
        }
        for (const auto &n : rep.notes)
            if (n.rfind("bare", 0) == 0) std::printf("%s\n", n.c_str());
    }
    std::printf("\nParley's own overhead = %s.\n", OVERHEAD_HOW);
    std::printf("First token = the decision + the server's timings.first_token_ms.\n");
    double total_s = ms_since(t0) / 1000;
    std::printf("benchmark took %.1f s\n", total_s);

    json bare_rows = json::array();
    for (const auto &b : rep.bare)
        bare_rows.push_back({{"stage", b.stage},
                             {"parley_ms", json_number(b.parley_ms)},
                             {"bare_ms", json_number(b.bare_ms)},
                             {"ratio", json_number(b.parley_ms / b.bare_ms)},
                             {"note", b.note}});
    json runs = json::array();
    for (const auto &run : rep.runs)
        runs.push_back(run_json(run));
    json j = {{"title", rep.title},
              {"settings",
               {{"mode", o.mode},
                {"protocol", o.protocol},
                {"pace", o.pace},
                {"sync", o.sync},
                {"turns_per_client", o.turns},
                {"warmup", o.warmup},
                {"gap_ms", o.gap_ms},
                {"timeout_ms", o.timeout_ms},
                {"turns_per_session", o.turns_per_session},
                {"server", server_line},
                {"server_args", server_args},
                {"model", sf.model},
                {"cores", cores}}},
              {"runs", runs},
              {"p95_ratio_to_1_client", ratios},
              {"realtime_to_native_median", protocol_ratios},
              {"bare", bare_rows},
              {"bare_details", bare_details},
              {"notes", rep.notes},
              {"duration_s", json_number(total_s)},
              {"server_log_tail", server_log_tail}};
    bool written =
        write_text(o.out, j.dump(1) + "\n") && write_text(o.html, render_voice_html(rep));
    if (written) std::printf("wrote %s and %s\n", o.out.c_str(), o.html.c_str());
    std::error_code ec;
    if (!tmp.empty()) fs::remove_all(tmp, ec);
    bool any_ok = false;
    for (const auto &run : rep.runs)
        for (const auto &t : run.turns)
            any_ok = any_ok || t.ok;
    if (server_died || !any_ok) return 1;
    return written ? 0 : 1;
}

} // namespace parley
