#include "llm/llm-rpc.h"

#include "core/log.h"
#include "llm/llm.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <thread>

namespace parley {

namespace {

// ggml's RPC backend is a plugin: loaded with the others, its functions found by name.
ggml_backend_reg_t rpc_reg() {
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("RPC");
    if (!reg) {
        ggml_backend_load_all();
        reg = ggml_backend_reg_by_name("RPC");
    }
    return reg;
}

// A TCP connection to the endpoint within the timeout: "" or why not.
std::string reach(const std::string &host, const std::string &port, int timeout_ms) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
        return gai_strerror(rc);
    std::string why = "no address";
    for (addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            rc = poll(&p, 1, timeout_ms) == 1 ? 0 : -1;
            int err = 0;
            socklen_t len = sizeof err;
            if (rc == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (rc != 0)
                errno = ETIMEDOUT;
            else if (err != 0)
                rc = -1, errno = err;
        }
        close(fd);
        if (rc == 0) {
            why.clear();
            break;
        }
        why = strerror(errno);
    }
    freeaddrinfo(res);
    return why;
}

} // namespace

std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> &endpoints) {
    ggml_backend_reg_t reg = rpc_reg();
    if (!reg) throw llm_error("--rpc needs ggml's RPC backend (the libggml0-backend-rpc package)");
    using add_fn = ggml_backend_reg_t (*)(const char *);
    auto add = reinterpret_cast<add_fn>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_rpc_add_server"));
    if (!add) throw llm_error("ggml's RPC backend has no ggml_backend_rpc_add_server");
    std::vector<ggml_backend_dev_t> out;
    for (const std::string &e : endpoints) {
        std::string host, port;
        if (!split_host_port(e, &host, &port)) throw llm_error("rpc: '" + e + "' is not HOST:PORT");
        if (std::string why = reach(host, port, 3000); !why.empty())
            throw llm_error("rpc worker " + e + " cannot be reached: " + why);
        ggml_backend_reg_t server = add(e.c_str());
        if (!server || ggml_backend_reg_dev_count(server) == 0)
            throw llm_error("rpc worker " + e + " offers no device");
        for (size_t i = 0; i < ggml_backend_reg_dev_count(server); ++i)
            out.push_back(ggml_backend_reg_dev_get(server, i));
    }
    return out;
}

int rpc_worker_main(const std::vector<std::string> &args) {
    std::string host = "127.0.0.1", cache_dir;
    int port = 50052, threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string &a = args[i];
        bool has = i + 1 < args.size();
        if (a == "--help" || a == "-h") {
            printf("usage: parley rpc-worker [--host ADDR] [--port N] [--threads N] "
                   "[--cache-dir DIR]\n"
                   "Serves this machine's CPU to a model's layers (serve --rpc HOST:PORT).\n"
                   "The protocol has no authentication: listen on a private network only.\n"
                   "  --host ADDR       listen address (default 127.0.0.1)\n"
                   "  --port N          listen port (default 50052)\n"
                   "  --threads N       threads (default: all cores)\n"
                   "  --cache-dir DIR   keep tensors sent once in DIR for later loads\n");
            return 0;
        }
        if (!has) {
            fprintf(stderr, "parley: rpc-worker: %s needs a value\n", a.c_str());
            return 2;
        }
        const std::string &v = args[++i];
        try {
            if (a == "--host")
                host = v;
            else if (a == "--port")
                port = std::stoi(v);
            else if (a == "--threads")
                threads = std::stoi(v);
            else if (a == "--cache-dir")
                cache_dir = v;
            else {
                fprintf(stderr, "parley: rpc-worker: unknown option %s\n", a.c_str());
                return 2;
            }
        } catch (const std::exception &) {
            fprintf(stderr, "parley: rpc-worker: %s takes a number\n", a.c_str());
            return 2;
        }
    }
    std::string h, p;
    if (port < 1 || port > 65535 || threads < 1 || threads > 256 ||
        !split_host_port(host + ":" + std::to_string(port), &h, &p)) {
        fprintf(stderr, "parley: rpc-worker: bad --host, --port or --threads\n");
        return 2;
    }
    ggml_backend_reg_t reg = rpc_reg();
    if (!reg) {
        fprintf(stderr, "parley: rpc-worker needs ggml's RPC backend (libggml0-backend-rpc)\n");
        return 1;
    }
    using start_fn = void (*)(const char *, const char *, size_t, size_t, ggml_backend_dev_t *);
    auto start = reinterpret_cast<start_fn>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_rpc_start_server"));
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!start || !cpu) {
        fprintf(stderr, "parley: rpc-worker: ggml's RPC server or CPU backend is missing\n");
        return 1;
    }
    bool loopback = host == "127.0.0.1" || host == "::1" || host == "localhost";
    if (!loopback)
        log_warn("rpc-worker: listening on %s: the RPC protocol has no authentication, keep it "
                 "on a private network",
                 host.c_str());
    std::string endpoint = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                           std::to_string(port);
    log_info("rpc-worker: serving the CPU on %s (%d threads)", endpoint.c_str(), threads);
    start(endpoint.c_str(), cache_dir.empty() ? nullptr : cache_dir.c_str(), size_t(threads), 1,
          &cpu);
    return 0;
}

} // namespace parley
