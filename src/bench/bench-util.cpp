// Benchmark helpers (see bench-util.h).
#include "bench/bench-util.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <regex>
#include <sstream>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace parley {

namespace fs = std::filesystem;
using json = nlohmann::json;

double ms_since(bench_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(bench_clock::now() - t0).count();
}

namespace {

std::vector<double> finite_sorted(std::vector<double> v) {
    v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }),
            v.end());
    std::sort(v.begin(), v.end());
    return v;
}

} // namespace

double median(std::vector<double> v) {
    v = finite_sorted(std::move(v));
    if (v.empty()) return NO_VALUE;
    size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double percentile(std::vector<double> v, double p) {
    v = finite_sorted(std::move(v));
    if (v.empty()) return NO_VALUE;
    double rank = std::ceil(p / 100.0 * double(v.size()));
    size_t i = rank < 1 ? 0 : std::min(v.size() - 1, size_t(rank) - 1);
    return v[i];
}

double max_of(const std::vector<double> &v) {
    std::vector<double> s = finite_sorted(v);
    return s.empty() ? NO_VALUE : s.back();
}

json json_number(double v) {
    return std::isfinite(v) ? json(std::round(v * 1000) / 1000) : json(nullptr);
}

std::vector<std::string> words_of(const std::string &text) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : text) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (std::isalnum(c) || c == '\'') {
            cur += char(std::tolower(c));
        } else if (!cur.empty()) {
            out.push_back(cur);
            cur.clear();
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

double word_error_rate(const std::string &ref, const std::string &hyp) {
    std::vector<std::string> r = words_of(ref), h = words_of(hyp);
    std::vector<size_t> prev(h.size() + 1), cur(h.size() + 1);
    for (size_t j = 0; j <= h.size(); ++j)
        prev[j] = j;
    for (size_t i = 1; i <= r.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= h.size(); ++j)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1])});
        std::swap(prev, cur);
    }
    return double(prev[h.size()]) / double(std::max<size_t>(1, r.size()));
}

bool alignment_bounds(const std::string &json_text, double *start_s, double *end_s,
                      std::vector<double> *pauses) {
    json j = json::parse(json_text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("w") || !j["w"].is_array()) return false;
    bool any = false;
    for (const json &w : j["w"]) {
        if (!w.is_object() || !w.contains("t") || !w["t"].is_string()) continue;
        std::string t = w["t"];
        if (t.empty() || t[0] == '<' || t[0] == '[' || t[0] == '+') continue;
        double b = w.value("b", 0.0), d = w.value("d", 0.0);
        if (!any) *start_s = b;
        if (any && pauses && b > *end_s) pauses->push_back(b - *end_s);
        *end_s = b + d;
        any = true;
    }
    return any;
}

// --- child processes ---

std::string parse_bench_cli(const std::vector<std::string> &args, const bench_cli &cli,
                            bool &help) {
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string &a = args[i];
        if (a == "-h" || a == "--help") {
            help = true;
            return {};
        }
        if (a == "--") {
            if (!cli.rest) return "unexpected --";
            cli.rest->assign(args.begin() + ptrdiff_t(i) + 1, args.end());
            return {};
        }
        if (auto f = cli.flags.find(a); f != cli.flags.end()) {
            f->second();
            continue;
        }
        auto it = cli.valued.find(a);
        if (it == cli.valued.end()) return "unknown option " + a;
        if (i + 1 >= args.size()) return "option " + a + " needs a value";
        const std::string &v = args[++i];
        try {
            it->second(v);
        } catch (const bench_option_error &e) {
            return e.what();
        } catch (const std::exception &) {
            return "bad value for " + a + ": " + v;
        }
    }
    return {};
}

int parse_int(const std::string &v, int lo, int hi) {
    size_t used = 0;
    int x = std::stoi(v, &used);
    if (used != v.size() || x < lo || x > hi) throw std::invalid_argument(v);
    return x;
}

int bench_cli_exit(bool help, const std::string &err, const char *usage, const char *prefix) {
    if (help) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (!err.empty()) {
        std::fprintf(stderr, "%s%s\n%s", prefix, err.c_str(), usage);
        return 2;
    }
    return -1;
}

std::string shell_quote(const std::string &s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

std::string join_command(const std::vector<std::string> &argv) {
    std::string cmd;
    for (const auto &a : argv)
        cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
    return cmd;
}

command_result run_command(const std::vector<std::string> &argv) {
    command_result r;
    std::string cmd = join_command(argv) + " 2>&1 </dev/null";
    auto t0 = bench_clock::now();
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        r.output.append(buf, n);
    int status = pclose(p);
    r.wall_ms = ms_since(t0);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

std::string find_tool(const std::string &name) {
    const char *env = std::getenv("PATH");
    std::stringstream path(env ? env : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(path, dir, ':')) {
        if (dir.empty()) continue;
        fs::path p = fs::path(dir) / name;
        if (access(p.c_str(), X_OK) == 0) return p.string();
    }
    return {};
}

std::string first_line(const std::string &s) {
    std::string line = s.substr(0, s.find('\n'));
    return line.size() > 160 ? line.substr(0, 160) + "..." : line;
}

double cli_ms_per_copy(const std::function<std::vector<std::string>(int copies)> &make, int warmup,
                       int repeats, std::vector<double> *one_wall, int copies) {
    copies = std::max(2, copies);
    std::vector<std::string> one = make(1), many = make(copies);
    std::vector<double> v;
    for (int i = 0; i < warmup + repeats; ++i) {
        command_result r1 = run_command(one);
        command_result rn = run_command(many);
        if (r1.rc != 0 || rn.rc != 0) return NO_VALUE;
        if (i < warmup) continue;
        if (one_wall) one_wall->push_back(r1.wall_ms);
        v.push_back((rn.wall_ms - r1.wall_ms) / (copies - 1));
    }
    return median(v);
}

std::vector<std::string> pocketsphinx_cli_command(const std::string &tool, bool fast) {
    if (!fast) return {tool, "-loglevel", "ERROR", "single"};
    return {tool,    "-loglevel", "ERROR",     "-fwdflat", "no",      "-bestpath", "no",
            "-topn", "2",         "-maxhmmpf", "3000",     "-maxwpf", "10",        "single"};
}

std::string pocketsphinx_cli_transcript(const std::string &tool, const std::string &file) {
    std::vector<std::string> argv = pocketsphinx_cli_command(tool);
    argv.push_back(file);
    command_result r = run_command(argv);
    if (r.rc != 0) return {};
    // One JSON object per file; the output also holds stderr (quiet at -loglevel ERROR).
    size_t brace = r.output.find('{');
    if (brace == std::string::npos) return {};
    nlohmann::json j = nlohmann::json::parse(r.output.substr(brace), nullptr, false);
    return j.is_object() && j.contains("t") && j["t"].is_string() ? j["t"].get<std::string>() : "";
}

std::string reference_transcript(const std::string &wav) {
    std::string txt = wav.substr(0, wav.rfind('.')) + ".txt";
    std::ifstream f(txt);
    if (!f) return {};
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t b = text.find_first_not_of(" \t\r\n"), e = text.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? "" : text.substr(b, e - b + 1);
}

// --- llama-server ---

std::string http_request(int port, const std::string &method, const std::string &path,
                         const std::string &body, double *first_ms, bool stop_at_first) {
    // From before the connection: llama-server closes a connection after each streamed reply,
    // so every client's request pays for a new one.
    auto t0 = bench_clock::now();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return {};
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        close(fd);
        return {};
    }
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!body.empty())
        req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\n";
    req += "\r\n" + body;
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size())) {
        close(fd);
        return {};
    }
    std::string got;
    char buf[8192];
    ssize_t n;
    bool seen = false;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        got.append(buf, size_t(n));
        if (first_ms && !seen && got.find("\"content\":\"") != std::string::npos) {
            // a delta with non-empty content ("content":"" is the role-only first chunk)
            static const std::regex re(R"("content":"[^"])");
            if (std::regex_search(got, re)) {
                *first_ms = ms_since(t0);
                seen = true;
                if (stop_at_first) break;
            }
        }
    }
    close(fd);
    return got;
}

int start_llama_server(const llama_server_options &o, std::string *error) {
    std::string cmd =
        join_command({o.tool, "-m", o.model, "-t", std::to_string(o.threads), "-tb",
                      std::to_string(o.threads_batch), "-c", std::to_string(o.context), "-np", "1",
                      "-b", std::to_string(o.batch), "-ub", std::to_string(o.batch), "--host",
                      "127.0.0.1", "--port", std::to_string(o.port)}) +
        " >/dev/null 2>&1 & echo $!";
    FILE *p = popen(cmd.c_str(), "r");
    int pid = 0;
    if (p) {
        if (std::fscanf(p, "%d", &pid) != 1) pid = 0;
        pclose(p);
    }
    if (pid <= 0) {
        *error = "could not start it";
        return 0;
    }
    for (int i = 0; i < 600; ++i) { // up to 60 s to load
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (http_request(o.port, "GET", "/health", "").find(" 200 ") != std::string::npos)
            return pid;
        if (kill(pid, 0) != 0) {
            *error = "exited while loading";
            return 0;
        }
    }
    stop_process(pid);
    *error = "did not answer /health within 60 s";
    return 0;
}

void stop_process(int pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    // llama-server is started through the shell, so it is not our child: then only its
    // disappearance says that it ended.
    for (int i = 0; i < 200; ++i) {
        pid_t r = waitpid(pid, nullptr, WNOHANG);
        if (r == pid || (r < 0 && kill(pid, 0) != 0)) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
}

int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

std::string chat_request_body(const json &messages, int max_tokens) {
    return json{{"messages", messages}, {"stream", true}, {"max_tokens", max_tokens},
                {"temperature", 0},     {"seed", 1},      {"cache_prompt", true}}
        .dump();
}

} // namespace parley
