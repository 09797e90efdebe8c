#include "net/server.h"

#include "core/guard.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/secret.h"
#include "core/worker.h"
#include "net/access.h"
#include "net/http-request.h"
#include "net/native-protocol.h"
#include "net/openai-rest.h"
#include "net/realtime-protocol.h"
#include "net/tls.h"
#include "net/web-assets.h"
#include "store/store.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace parley {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;
using json = nlohmann::json;

namespace {

constexpr size_t WS_READ_MAX = 8 << 20;   // larger frames close the connection
constexpr size_t WS_QUEUE_MAX = 64 << 20; // a client that stops reading is dropped
// With --log-level debug, a message that takes longer than this from queue to socket is logged.
constexpr auto WS_SLOW_WRITE = std::chrono::milliseconds(1);

// What a WebSocket connection speaks, chosen by its path.
enum ws_protocol {
    WS_PROTOCOL_NATIVE,   // /ws
    WS_PROTOCOL_REALTIME, // /v1/realtime
};

} // namespace

// What the server asks of a WebSocket connection, plain or over TLS.
class ws_conn_base {
  public:
    virtual ~ws_conn_base() = default;
    virtual double idle_s() const = 0; // seconds since the client's last message
    virtual void idle_close(int timeout_s) = 0;
    virtual void shutdown() = 0;
    virtual void store_changed() = 0;
    virtual void close_session() = 0;
    // The server is draining: once the session's reply in progress is done and the client told
    // (server_draining), the connection closes with 1012 (service restart).
    virtual void drain() = 0;
};

struct server::impl {
    server_options opt;
    session_engines eng;
    session_config cfg;
    server_info info;
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc};
    asio::signal_set signals{ioc, SIGINT, SIGTERM};
    std::mutex conns_m;
    std::set<std::shared_ptr<ws_conn_base>> conns;
    std::unique_ptr<ssl::context> tls; // HTTPS and WSS (--tls-cert/--tls-key, --tls self-signed)
    std::unique_ptr<openai_rest> rest; // /v1/...
    std::atomic<bool> stopping{false};
    // SIGTERM: no new sessions, the replies in progress finish, then the server stops (or after
    // --drain-seconds).
    std::atomic<bool> draining{false};
    mono_time drain_until{};
    void drain();
    void watch_drain();
    // Every second: idle sessions, and is the database file still there? (store::check_file)
    asio::steady_timer housekeeping_timer{ioc};
    uint64_t store_generation = 0;

    std::string tls_fingerprint;
    void setup_tls();
    void accept();
    void housekeeping();
    void watch_store();
    void shutdown();
    bool carries_api_key(const http::request<http::string_body> &req) const;
    bool authorized(const http::request<http::string_body> &req) const;
    bool host_ok(const http::request<http::string_body> &req) const;
    bool origin_ok(const http::request<http::string_body> &req, bool over_tls) const;
    http::response<http::string_body> handle(const http::request<http::string_body> &req);
    http::response<http::string_body> session_history(
        const http::request<http::string_body> &req, const std::string &id,
        const std::function<http::response<http::string_body>(http::status, const json &)>
            &json_reply);
    void add(const std::shared_ptr<ws_conn_base> &c) {
        std::lock_guard lock(conns_m);
        conns.insert(c);
    }
    void remove(const std::shared_ptr<ws_conn_base> &c) {
        std::lock_guard lock(conns_m);
        conns.erase(c);
    }
    // Admission of a WebSocket session (--max-sessions, --max-sessions-per-ip): 0 when
    // admitted (leave() when it ends), else the HTTP status that refuses it.
    int admit(const std::string &ip);
    void leave(const std::string &ip);
    std::mutex admitted_m;
    int admitted = 0;
    std::map<std::string, int> admitted_by_ip;
};

// One WebSocket connection over Stream (beast::tcp_stream, or tls_stream over it).
template <class Stream>
class ws_conn : public ws_conn_base,
                public ws_output,
                public std::enable_shared_from_this<ws_conn<Stream>> {
  public:
    ws_conn(server::impl *srv, Stream &&stream, std::string ip, ws_protocol protocol)
        : srv_(srv), ws_(std::move(stream)), ip_(std::move(ip)), protocol_(protocol) {}
    ~ws_conn() override { srv_->leave(ip_); }
    using std::enable_shared_from_this<ws_conn<Stream>>::shared_from_this;

    double idle_s() const override {
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
                   .count() -
               last_input_s_.load();
    }

    // Closed for silence (--idle-timeout): the session ends (its turn recorded), the client is
    // told why, and the connection closes after that.
    void idle_close(int timeout_s) override {
        if (idle_closed_.exchange(true)) return;
        std::shared_ptr<ws_session> s;
        {
            std::lock_guard lock(qm_);
            s = std::move(sess_);
        }
        if (s) {
            s->close();
            send_text(s->error_message("idle_timeout", "nothing from the client for " +
                                                           std::to_string(timeout_s) +
                                                           " s: this session is closed"));
        }
        end("idle_timeout");
    }

    void run(http::request<http::string_body> req) {
        resume_id_ = query_param(req.target(), "session_id");
        std::string offered(req[http::field::sec_websocket_protocol]);
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        ws_.read_message_max(WS_READ_MAX);
        // A message goes out as one frame, in one write: Beast's default cuts it in 4 KiB frames,
        // each its own write (a phrase's audio is 50-200 KB).
        ws_.auto_fragment(false);
        // The protocol's own subprotocol name, when the client offers it.
        const char *name = protocol_ == WS_PROTOCOL_REALTIME ? "realtime" : "parley";
        bool select = offers_subprotocol(offered, name);
        ws_.set_option(
            websocket::stream_base::decorator([select, name](websocket::response_type &res) {
                res.set(http::field::server, "parley");
                if (select) res.set(http::field::sec_websocket_protocol, name);
            }));
        ws_.async_accept(req, beast::bind_front_handler(&ws_conn::on_accept, shared_from_this()));
    }

    void send_text(std::string message) override { enqueue(false, std::move(message)); }
    void send_binary(std::string bytes) override { enqueue(true, std::move(bytes)); }
    void hold() override {
        std::lock_guard lock(qm_);
        held_ = true;
    }
    void flush() override {
        std::lock_guard lock(qm_);
        held_ = false;
        start_writing_locked();
    }

    // After what is queued: a close frame with the reason (policy violation, 1008).
    void end(const std::string &reason) override {
        std::lock_guard lock(qm_);
        if (closed_) return;
        end_reason_ = reason.empty() ? "ended" : reason;
        if (!writing_ && q_.empty()) close_locked();
    }

    void close_locked() {
        closed_ = true;
        asio::post(ws_.get_executor(),
                   [self = shared_from_this(), reason = end_reason_, code = end_code_] {
                       if (self->ws_.is_open())
                           self->ws_.async_close(websocket::close_reason(code, reason),
                                                 [self](beast::error_code) {});
                   });
    }

    void drain() override {
        std::shared_ptr<ws_session> s;
        {
            std::lock_guard lock(qm_);
            s = sess_;
        }
        auto self = shared_from_this();
        auto go = [self] {
            std::lock_guard lock(self->qm_);
            if (self->closed_) return;
            self->end_code_ = websocket::close_code::service_restart;
            self->end_reason_ = "server draining";
            if (!self->writing_ && self->q_.empty()) self->close_locked();
        };
        if (s)
            s->drain(go);
        else
            go();
    }

    void shutdown() override {
        asio::post(ws_.get_executor(), [self = shared_from_this()] {
            if (self->ws_.is_open())
                self->ws_.async_close(websocket::close_code::going_away,
                                      [self](beast::error_code) {});
        });
    }

    void store_changed() override {
        std::shared_ptr<ws_session> s;
        {
            std::lock_guard lock(qm_);
            s = sess_;
        }
        if (s) s->store_changed();
    }

    void close_session() override {
        std::shared_ptr<ws_session> s;
        {
            std::lock_guard lock(qm_);
            closed_ = true;
            q_.clear();
            s = std::move(sess_);
        }
        if (s) s->close();
    }

  private:
    void on_accept(beast::error_code ec) {
        if (ec) return;
        touch();
        srv_->add(shared_from_this());
        std::string err = run_guarded("ws: opening a session", [&] {
            std::shared_ptr<ws_session> s;
            if (protocol_ == WS_PROTOCOL_REALTIME)
                s = std::make_shared<realtime_connection>(srv_->eng, srv_->cfg, srv_->info,
                                                          shared_from_this());
            else
                s = std::make_shared<native_connection>(srv_->eng, srv_->cfg, shared_from_this());
            {
                std::lock_guard lock(qm_);
                sess_ = s;
            }
            s->open(resume_id_);
        });
        if (!err.empty())
            send_text(protocol_ == WS_PROTOCOL_REALTIME
                          ? realtime_error_message("server_error", "the session could not open")
                          : encode_error("internal", "the session could not open"));
        do_read();
    }

    void do_read() {
        ws_.async_read(buf_, beast::bind_front_handler(&ws_conn::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, size_t) {
        if (ec) {
            if (ec == websocket::error::message_too_big)
                log_warn("ws: closing a connection that sent a message over %zu bytes",
                         WS_READ_MAX);
            close_session();
            srv_->remove(shared_from_this());
            return;
        }
        touch();
        std::string msg = beast::buffers_to_string(buf_.data());
        buf_.consume(buf_.size());
        std::shared_ptr<ws_session> s;
        {
            std::lock_guard lock(qm_);
            s = sess_;
        }
        if (s) {
            bool binary = ws_.got_binary();
            std::string err = run_guarded(binary ? "ws: an audio frame" : "ws: a message", [&] {
                if (binary)
                    s->on_binary(msg);
                else
                    s->on_text(msg);
            });
            if (!err.empty())
                send_text(s->error_message("internal", "this message failed inside the server; "
                                                       "the session goes on"));
        }
        do_read();
    }

    void enqueue(bool binary, std::string data) {
        std::lock_guard lock(qm_);
        if (closed_) return;
        queued_ += data.size();
        if (queued_ > WS_QUEUE_MAX) {
            log_warn("ws: client is not reading; dropping the connection");
            closed_ = true;
            q_.clear();
            asio::post(ws_.get_executor(),
                       [self = shared_from_this()] { beast::get_lowest_layer(self->ws_).close(); });
            return;
        }
        q_.push_back({binary, std::move(data), std::chrono::steady_clock::now(), {}});
        if (!held_) start_writing_locked();
    }

    void start_writing_locked() {
        if (writing_ || closed_ || q_.empty()) return;
        writing_ = true;
        asio::post(ws_.get_executor(), [self = shared_from_this()] { self->do_write(); });
    }

    void do_write() {
        std::lock_guard lock(qm_);
        if (q_.empty()) {
            writing_ = false;
            if (!end_reason_.empty() && !closed_) close_locked();
            return;
        }
        auto &front = q_.front();
        front.started = std::chrono::steady_clock::now();
        ws_.binary(front.binary);
        ws_.async_write(asio::buffer(front.data),
                        beast::bind_front_handler(&ws_conn::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, size_t) {
        {
            std::lock_guard lock(qm_);
            if (!q_.empty()) {
                const outgoing &done = q_.front();
                queued_ -= done.data.size();
                auto now = std::chrono::steady_clock::now();
                if (now - done.queued > WS_SLOW_WRITE) {
                    using ms = std::chrono::duration<double, std::milli>;
                    log_debug("ws: a %zu-byte message went out %.1f ms after it was queued (its "
                              "write began after %.1f ms, %zu behind it)",
                              done.data.size(), ms(now - done.queued).count(),
                              ms(done.started - done.queued).count(), q_.size() - 1);
                }
                q_.pop_front();
            }
            if (ec) {
                closed_ = true;
                q_.clear();
                writing_ = false;
                return;
            }
        }
        do_write();
    }

    server::impl *srv_;
    websocket::stream<Stream> ws_;
    beast::flat_buffer buf_;
    std::string resume_id_;
    std::mutex qm_;
    struct outgoing {
        bool binary;
        std::string data;
        std::chrono::steady_clock::time_point queued, started;
    };
    std::deque<outgoing> q_;
    size_t queued_ = 0;
    bool writing_ = false;
    std::string end_reason_; // end(): close once the queue is empty
    websocket::close_code end_code_ = websocket::close_code::policy_error;
    std::string ip_; // the client's address (admission)
    ws_protocol protocol_;
    std::atomic<double> last_input_s_{0};
    std::atomic<bool> idle_closed_{false};

    void touch() {
        last_input_s_ =
            std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
                .count();
    }
    bool held_ = false; // hold(): messages queue, the writer starts at flush()
    bool closed_ = false;
    std::shared_ptr<ws_session> sess_;
};

// One HTTP connection over Stream (beast::tcp_stream, or tls_stream over it), until it
// upgrades to a WebSocket or closes. `buf` holds bytes already read from it (TLS detection's).
// A plain connection with `tls_only` answers every request with 400: this server speaks TLS.
template <class Stream> class http_conn : public std::enable_shared_from_this<http_conn<Stream>> {
    static constexpr bool over_tls = std::is_same_v<Stream, tls_stream>;

  public:
    http_conn(server::impl *srv, Stream &&stream, beast::flat_buffer &&buf, bool tls_only = false)
        : srv_(srv), stream_(std::move(stream)), buf_(std::move(buf)), tls_only_(tls_only) {}
    using std::enable_shared_from_this<http_conn<Stream>>::shared_from_this;

    void run() {
        asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
            if constexpr (over_tls) {
                beast::get_lowest_layer(self->stream_).expires_after(std::chrono::seconds(30));
                self->stream_.async_handshake(
                    ssl::stream_base::server, self->buf_.data(),
                    [self](beast::error_code ec, size_t used) {
                        if (ec) return; // not TLS after all, or a client that gave up
                        self->buf_.consume(used);
                        self->do_read();
                    });
            } else {
                self->do_read();
            }
        });
    }

  private:
    tcp::socket &socket() { return beast::get_lowest_layer(stream_).socket(); }
    size_t upload_max() const { return size_t(srv_->opt.max_upload_mb) << 20; }

    void do_read() {
        parser_.emplace();
        // No body limit until the headers say the route (on_header sets the route's).
        limit_request_parser(*parser_, std::numeric_limits<size_t>::max());
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
        http::async_read_header(
            stream_, buf_, *parser_,
            beast::bind_front_handler(&http_conn::on_header, shared_from_this()));
    }

    // The headers are in: the route sets the body's limit (an upload's is larger), and a body
    // announced over it is refused before it is read.
    void on_header(beast::error_code ec, size_t n) {
        if (ec) return on_read(ec, n);
        const auto &h = parser_->get();
        std::string_view path = path_of(h.target());
        bool openai = openai_rest::handles(path);
        size_t limit = openai ? openai_rest::body_limit(path, upload_max()) : HTTP_BODY_MAX;
        parser_->body_limit(limit); // a chunked body's chunks count against it from here
        if (parser_->content_length() && *parser_->content_length() > limit) {
            std::string message = "The request body (" +
                                  std::to_string(*parser_->content_length()) +
                                  " bytes) is over this route's limit of " + std::to_string(limit) +
                                  " bytes" + (openai ? " (--max-upload-mb)." : ".");
            auto res = openai ? text_response(http::status::payload_too_large, "application/json",
                                              openai_error(message, "invalid_request_error", {},
                                                           "request_too_large"))
                              : error_response(http::request<http::string_body>{},
                                               http::status::payload_too_large, message);
            res.keep_alive(false);
            return reply(std::move(res));
        }
        if (beast::iequals(h[http::field::expect], "100-continue")) {
            auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                           h.version());
            return http::async_write(
                stream_, *cont, [self = shared_from_this(), cont](beast::error_code e, size_t) {
                    if (e) return;
                    self->read_body();
                });
        }
        read_body();
    }

    void read_body() {
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(120));
        http::async_read(stream_, buf_, *parser_,
                         beast::bind_front_handler(&http_conn::on_read, shared_from_this()));
    }

    static http::response<http::string_body>
    text_response(http::status status, const std::string &type, std::string body) {
        http::response<http::string_body> res{status, 11};
        res.set(http::field::server, "parley");
        res.set(http::field::content_type, type);
        res.body() = std::move(body);
        res.prepare_payload();
        return res;
    }

    void on_read(beast::error_code ec, size_t) {
        if (ec) {
            // A request that cannot be read gets its status before the connection closes.
            if (auto status = parse_error_status(ec))
                return reply(error_response(http::request<http::string_body>{}, *status,
                                            "bad request: " + ec.message()));
            return linger_close();
        }
        http::request<http::string_body> req = parser_->release();
        if (tls_only_)
            return reply(error_response(req, http::status::bad_request,
                                        "this server speaks TLS to other machines: use https:// "
                                        "or wss://"));
        if (!srv_->host_ok(req))
            return reply(error_response(req, http::status::forbidden,
                                        "host not allowed: this server answers to loopback "
                                        "names (more with --allow-host)"));
        std::string_view path = path_of(req.target());
        bool realtime = path == "/v1/realtime";
        if (websocket::is_upgrade(req) && (path == "/ws" || realtime)) {
            if (!srv_->authorized(req))
                return reply(
                    realtime ? text_response(http::status::unauthorized, "application/json",
                                             openai_error("Incorrect API key provided.",
                                                          "invalid_request_error", {},
                                                          "invalid_api_key"))
                             : error_response(req, http::status::unauthorized, "API key required"));
            if (!srv_->origin_ok(req, over_tls))
                return reply(error_response(req, http::status::forbidden, "origin not allowed"));
            beast::error_code ec2;
            auto peer = socket().remote_endpoint(ec2);
            std::string ip = ec2 ? std::string() : peer.address().to_string();
            ip = client_address(ip, req[http::field::x_forwarded_for], srv_->opt.trusted_proxies);
            if (srv_->draining) return reply(busy_response(req, 0));
            if (int refused = srv_->admit(ip)) return reply(busy_response(req, refused));
            beast::get_lowest_layer(stream_).expires_never();
            std::make_shared<ws_conn<Stream>>(srv_, std::move(stream_), ip,
                                              realtime ? WS_PROTOCOL_REALTIME : WS_PROTOCOL_NATIVE)
                ->run(std::move(req));
            return;
        }
        if (openai_rest::handles(path) && srv_->rest) return rest(std::move(req));
        std::optional<http::response<http::string_body>> res;
        std::string err = run_guarded("http", [&] { res.emplace(srv_->handle(req)); });
        if (!err.empty() || !res)
            return reply(error_response(req, http::status::internal_server_error,
                                        "internal error: the request failed inside the server"));
        reply(std::move(*res));
    }

    // An OpenAI-compatible request: answered by openai_rest, whole or streamed, from whichever
    // thread; the connection reads its next request once the answer is out.
    class answer : public http_answer {
      public:
        answer(std::shared_ptr<http_conn> c, unsigned version, bool keep_alive)
            : c_(std::move(c)), version_(version), keep_alive_(keep_alive) {}
        void reply(int status, const std::string &type, std::string body) override {
            auto res = text_response(http::status(status), type, std::move(body));
            res.version(version_);
            res.keep_alive(keep_alive_);
            asio::post(c_->stream_.get_executor(),
                       [c = c_, res = std::move(res)]() mutable { c->reply(std::move(res)); });
        }
        void start_stream(const std::string &type) override {
            write("HTTP/1.1 200 OK\r\nServer: parley\r\nContent-Type: " + type +
                  "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" +
                  (keep_alive_ ? "" : "Connection: close\r\n") + "\r\n");
        }
        void send_chunk(std::string data) override {
            if (data.empty()) return;
            char size[20];
            std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
            write(size + std::move(data) + "\r\n");
        }
        void end_stream() override { write("0\r\n\r\n", true); }
        void abort_stream() override { write(std::string(), true, true); }
        bool gone() const override { return c_->stream_gone_; }

      private:
        // last: the stream's end (then the next request, or a close); cut: close without
        // the chunked terminator.
        void write(std::string bytes, bool last = false, bool cut = false) {
            asio::post(c_->stream_.get_executor(),
                       [c = c_, bytes = std::move(bytes), last, cut, keep = keep_alive_]() mutable {
                           c->stream_out_.push_back(std::move(bytes));
                           if (last) c->stream_ends_ = keep && !cut ? 1 : 2;
                           if (c->stream_out_.size() == 1) c->write_stream();
                       });
        }
        std::shared_ptr<http_conn> c_;
        unsigned version_;
        bool keep_alive_;
    };

    void rest(http::request<http::string_body> req) {
        if (!srv_->authorized(req))
            return reply(text_response(
                http::status::unauthorized, "application/json",
                openai_error("Incorrect API key provided. Send it as Authorization: Bearer KEY.",
                             "invalid_request_error", {}, "invalid_api_key")));
        beast::get_lowest_layer(stream_).expires_never();
        rest_request r;
        r.method = std::string(req.method_string());
        r.path = std::string(path_of(req.target()));
        r.content_type = std::string(req[http::field::content_type]);
        r.body = std::move(req.body());
        auto a = std::make_shared<answer>(shared_from_this(), req.version(), req.keep_alive());
        std::string err = run_guarded("rest", [&] { srv_->rest->handle(std::move(r), a); });
        if (!err.empty())
            a->reply(500, "application/json",
                     openai_error("the request failed inside the server", "server_error", {}, {}));
    }

    // A streamed answer's bytes, one write at a time, in order; at its end the connection reads
    // its next request (or closes).
    void write_stream() {
        asio::async_write(stream_, asio::buffer(stream_out_.front()),
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) {
                                  self->stream_gone_ = true;
                                  self->stream_out_.clear();
                                  return;
                              }
                              self->stream_out_.pop_front();
                              if (!self->stream_out_.empty()) return self->write_stream();
                              if (self->stream_ends_ == 1) {
                                  self->stream_ends_ = 0;
                                  return self->do_read();
                              }
                              if (self->stream_ends_ == 2) self->linger_close();
                          });
    }

    // Refused for the limits: 503 (the server is full) or 429 (this address has its share),
    // with when to try again; status 0: 503, the server is draining (another one takes it).
    static http::response<http::string_body>
    busy_response(const http::request<http::string_body> &req, int status) {
        bool draining = status == 0;
        bool full = status == int(http::status::service_unavailable);
        http::response<http::string_body> res{
            draining ? http::status::service_unavailable : http::status(status), req.version()};
        res.set(http::field::content_type, "application/json");
        res.set(http::field::retry_after, draining ? "1" : "5");
        res.body() = json({{"error", draining ? "this server is going down: connect again (to "
                                                "another server)"
                                     : full   ? "the server has all the sessions it takes "
                                                "(--max-sessions); try again later"
                                              : "this address has all the sessions it may open "
                                                "(--max-sessions-per-ip); try again later"},
                           {"code", draining ? "server_draining"
                                    : full   ? "server_full"
                                             : "too_many_sessions"}})
                         .dump();
        res.keep_alive(false);
        res.prepare_payload();
        return res;
    }

    static http::response<http::string_body>
    error_response(const http::request<http::string_body> &req, http::status status,
                   const std::string &message) {
        http::response<http::string_body> res{status, req.version()};
        res.set(http::field::content_type, "application/json");
        res.body() = json({{"error", message}}).dump();
        res.keep_alive(false);
        res.prepare_payload();
        return res;
    }

    void reply(http::response<http::string_body> res) {
        auto sp = std::make_shared<http::response<http::string_body>>(std::move(res));
        http::async_write(stream_, *sp,
                          [self = shared_from_this(), sp](beast::error_code ec, size_t) {
                              if (ec || !sp->keep_alive()) return self->linger_close();
                              self->do_read();
                          });
    }

    // Closing with the client's bytes unread makes the kernel answer with a reset, which can
    // destroy the reply the client has not read yet (a 413 or 431 for a request still being
    // sent). So the send side is shut, and what the client still sends is read and dropped
    // until it closes, for at most LINGER.
    void linger_close() {
        static constexpr auto LINGER = std::chrono::seconds(2);
        beast::error_code ignored;
        socket().shutdown(tcp::socket::shutdown_send, ignored);
        beast::get_lowest_layer(stream_).expires_after(LINGER);
        drain_input();
    }
    void drain_input() {
        beast::get_lowest_layer(stream_).async_read_some(
            asio::buffer(linger_buf_), [self = shared_from_this()](beast::error_code ec, size_t) {
                if (ec) {
                    beast::error_code ignored;
                    self->socket().close(ignored);
                    return;
                }
                self->drain_input();
            });
    }

    server::impl *srv_;
    Stream stream_;
    beast::flat_buffer buf_;
    bool tls_only_ = false;
    std::optional<http_request_parser> parser_;
    std::deque<std::string> stream_out_; // a streamed answer's bytes not yet written
    int stream_ends_ = 0;                // 1: the stream ended, read on; 2: then close
    std::atomic<bool> stream_gone_{false};
    std::array<char, 4096> linger_buf_;
};

// A new connection where TLS is on: its first bytes say whether it is TLS (a ClientHello) or
// plain HTTP. Plain is served to this machine's own clients (a health check, the local page)
// and refused with a reason to any other.
class tls_detector : public std::enable_shared_from_this<tls_detector> {
  public:
    tls_detector(server::impl *srv, tcp::socket socket) : srv_(srv), stream_(std::move(socket)) {}

    void run() {
        stream_.expires_after(std::chrono::seconds(30));
        beast::async_detect_ssl(stream_, buf_,
                                [self = shared_from_this()](beast::error_code ec, bool tls) {
                                    if (!ec) self->on_detect(tls);
                                });
    }

  private:
    void on_detect(bool tls) {
        if (tls) {
            std::make_shared<http_conn<tls_stream>>(
                srv_, tls_stream(std::move(stream_), *srv_->tls), std::move(buf_))
                ->run();
            return;
        }
        beast::error_code ec;
        auto peer = stream_.socket().remote_endpoint(ec);
        bool local = !ec && peer.address().is_loopback();
        std::make_shared<http_conn<beast::tcp_stream>>(srv_, std::move(stream_), std::move(buf_),
                                                       !local)
            ->run();
    }

    server::impl *srv_;
    beast::tcp_stream stream_;
    beast::flat_buffer buf_;
};

bool server::impl::carries_api_key(const http::request<http::string_body> &req) const {
    return carries_key(opt.api_key, req[http::field::authorization],
                       query_param(req.target(), "api_key"),
                       req[http::field::sec_websocket_protocol]);
}

bool server::impl::authorized(const http::request<http::string_body> &req) const {
    return opt.api_key.empty() || carries_api_key(req);
}

bool server::impl::host_ok(const http::request<http::string_body> &req) const {
    return host_allowed(req[http::field::host], is_loopback(opt.host), opt.allowed_hosts);
}

bool server::impl::origin_ok(const http::request<http::string_body> &req, bool over_tls) const {
    return origin_allowed(req[http::field::origin], req[http::field::host], over_tls,
                          opt.allowed_origins);
}

// GET /sessions/{id}: the history, for the holder of the session's resume token
// ("Authorization: Bearer TOKEN" or ?token=) or of the API key. Without either, 401 whether
// the session exists or not.
http::response<http::string_body> server::impl::session_history(
    const http::request<http::string_body> &req, const std::string &id,
    const std::function<http::response<http::string_body>(http::status, const json &)>
        &json_reply) {
    std::string token = bearer_token(req[http::field::authorization]);
    if (token.empty()) token = query_param(req.target(), "token");
    bool by_key = !opt.api_key.empty() && carries_api_key(req);
    std::optional<std::string> hash;
    std::vector<turn_record> records;
    std::string err = store_call("GET /sessions", [&] {
        if (eng.db) hash = eng.db->session_token_hash(id);
    });
    bool by_token =
        hash && !hash->empty() && !token.empty() && secrets_equal(secret_hash(token), *hash);
    if (err.empty() && !by_key && !by_token)
        return json_reply(http::status::unauthorized,
                          {{"error", "this session's resume token (Authorization: Bearer TOKEN) "
                                     "or the API key is required"},
                           {"code", "unauthorized"}});
    if (err.empty() && hash)
        err = store_call("GET /sessions", [&] { records = eng.db->load_turns(id); });
    if (!err.empty())
        return json_reply(http::status::internal_server_error,
                          {{"error", "the session store failed"}, {"code", "store_failed"}});
    if (!hash) return json_reply(http::status::not_found, {{"error", "no such session"}});
    json turns = json::array();
    for (const turn_record &t : records) {
        json timings = json::parse(t.timings_json, nullptr, false);
        turns.push_back({{"turn_id", t.turn_id},
                         {"user", t.user},
                         {"assistant", t.assistant},
                         {"interrupted", t.interrupted},
                         {"timings", timings.is_discarded() ? json::object() : timings},
                         {"created_ms", t.created_ms}});
    }
    return json_reply(http::status::ok, {{"session_id", id}, {"turns", turns}});
}

http::response<http::string_body>
server::impl::handle(const http::request<http::string_body> &req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "parley");
    res.keep_alive(req.keep_alive());
    std::string path(path_of(req.target()));
    auto json_reply = [&](http::status st, const json &body) {
        res.result(st);
        res.set(http::field::content_type, "application/json");
        res.body() = body.dump(-1, ' ', false, json::error_handler_t::replace);
        res.prepare_payload();
        return res;
    };
    if (req.method() != http::verb::get && req.method() != http::verb::head)
        return json_reply(http::status::method_not_allowed, {{"error", "only GET is supported"}});
    if (path == "/health") {
        // A store that refuses writes, or whose file vanished: 503 with the reason.
        std::string store_failure = eng.db ? eng.db->failure() : std::string();
        bool ok = store_failure.empty() && !draining;
        return json_reply(ok ? http::status::ok : http::status::service_unavailable,
                          {{"status", draining                ? "draining"
                                      : store_failure.empty() ? "ok"
                                                              : "failing"},
                           {"store", store_failure.empty() ? json("ok") : json(store_failure)},
                           {"llm", info.llm.empty() ? json(nullptr) : json(info.llm)},
                           {"asr", info.asr.empty() ? json(nullptr) : json(info.asr)},
                           {"tts", info.tts.empty() ? json(nullptr) : json(info.tts)},
                           {"sessions", eng.stats ? eng.stats->sessions_open.load() : 0},
                           {"turns", eng.stats ? eng.stats->turns.load() : 0}});
    }
    if (path == "/metrics") {
        res.set(http::field::content_type, "text/plain; version=0.0.4");
        res.body() = eng.stats ? eng.stats->render() : std::string();
        res.prepare_payload();
        return res;
    }
    if (path.starts_with("/sessions/")) return session_history(req, path.substr(10), json_reply);
    if (const web_asset *a = find_web_asset(path == "/" ? "/index.html" : path)) {
        res.set(http::field::content_type, a->mime);
        res.set(http::field::cache_control, "no-cache");
        res.body().assign(reinterpret_cast<const char *>(a->data), a->size);
        res.prepare_payload();
        return res;
    }
    return json_reply(http::status::not_found, {{"error", "not found"}});
}

void server::impl::accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (stopping) return;
        if (!ec) {
            // Replies are small text messages right behind audio: Nagle's algorithm would hold
            // them (and the audio's last segment) until the client acknowledges what went before.
            beast::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            if (tls)
                std::make_shared<tls_detector>(this, std::move(socket))->run();
            else
                std::make_shared<http_conn<beast::tcp_stream>>(
                    this, beast::tcp_stream(std::move(socket)), beast::flat_buffer())
                    ->run();
        }
        accept();
    });
}

int server::impl::admit(const std::string &ip) {
    std::lock_guard lock(admitted_m);
    if (opt.max_sessions > 0 && admitted >= opt.max_sessions)
        return int(http::status::service_unavailable);
    if (opt.max_sessions_per_ip > 0 && admitted_by_ip[ip] >= opt.max_sessions_per_ip)
        return int(http::status::too_many_requests);
    ++admitted;
    ++admitted_by_ip[ip];
    return 0;
}

void server::impl::leave(const std::string &ip) {
    std::lock_guard lock(admitted_m);
    --admitted;
    if (--admitted_by_ip[ip] <= 0) admitted_by_ip.erase(ip);
}

void server::impl::housekeeping() {
    if (stopping) return;
    housekeeping_timer.expires_after(std::chrono::seconds(1));
    housekeeping_timer.async_wait([this](beast::error_code ec) {
        if (ec || stopping) return;
        run_guarded("store: checking its file", [&] { watch_store(); });
        if (opt.idle_timeout_s > 0) {
            std::vector<std::shared_ptr<ws_conn_base>> idle;
            {
                std::lock_guard lock(conns_m);
                for (auto &c : conns)
                    if (c->idle_s() > opt.idle_timeout_s) idle.push_back(c);
            }
            for (auto &c : idle)
                c->idle_close(opt.idle_timeout_s);
        }
        housekeeping();
    });
}

// A database made anew (its file was removed under the server): the live sessions write their
// histories into it.
void server::impl::watch_store() {
    if (!eng.db) return;
    eng.db->check_file();
    if (uint64_t g = eng.db->generation(); g != store_generation) {
        store_generation = g;
        std::lock_guard lock(conns_m);
        for (auto &c : conns)
            c->store_changed();
    }
}

void server::impl::drain() {
    draining = true;
    drain_until = mono_now() + std::chrono::seconds(opt.drain_seconds);
    std::set<std::shared_ptr<ws_conn_base>> all;
    {
        std::lock_guard lock(conns_m);
        all = conns;
    }
    log_info("draining: no new sessions; %zu session(s) finish their replies, then reconnect "
             "elsewhere (at most %d s)",
             all.size(), opt.drain_seconds);
    for (auto &c : all)
        c->drain();
    watch_drain();
}

// Every 50 ms: the server stops once its sessions have gone, or when the time is up.
void server::impl::watch_drain() {
    size_t left;
    {
        std::lock_guard lock(conns_m);
        left = conns.size();
    }
    if (left == 0 || mono_now() >= drain_until) {
        if (left)
            log_warn("draining: %zu session(s) still busy after %d s: closing them", left,
                     opt.drain_seconds);
        return shutdown();
    }
    auto timer = std::make_shared<asio::steady_timer>(ioc, std::chrono::milliseconds(50));
    timer->async_wait([this, timer](beast::error_code ec) {
        if (!ec && !stopping) watch_drain();
    });
}

void server::impl::shutdown() {
    if (stopping.exchange(true)) return;
    housekeeping_timer.cancel();
    log_info("shutting down: closing sessions");
    beast::error_code ec;
    acceptor.close(ec);
    std::set<std::shared_ptr<ws_conn_base>> all;
    {
        std::lock_guard lock(conns_m);
        all.swap(conns);
    }
    for (auto &c : all) {
        c->close_session(); // cancels and records turns in progress
        c->shutdown();
    }
    auto timer = std::make_shared<asio::steady_timer>(ioc, std::chrono::milliseconds(300));
    timer->async_wait([this, timer](beast::error_code) { ioc.stop(); });
}

server::server(const server_options &options, const session_engines &engines,
               const session_config &config, const server_info &info)
    : impl_(std::make_unique<impl>()) {
    impl_->opt = options;
    impl_->eng = engines;
    impl_->cfg = config;
    impl_->info = info;
    if (options.tls()) impl_->setup_tls();
    impl_->rest = std::make_unique<openai_rest>(engines, config, info);
    // An address or a name ("localhost", a host name): the first of its addresses that binds.
    beast::error_code ec;
    tcp::resolver resolver(impl_->ioc);
    auto endpoints = resolver.resolve(options.host, std::to_string(options.port),
                                      tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec) throw std::runtime_error("cannot listen on " + options.host + ": " + ec.message());
    // IPv4 first: "localhost" then listens where http://127.0.0.1 reaches it too.
    std::vector<tcp::endpoint> candidates;
    for (const auto &entry : endpoints)
        candidates.push_back(entry.endpoint());
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const tcp::endpoint &a, const tcp::endpoint &b) {
                         return a.address().is_v4() && !b.address().is_v4();
                     });
    for (const tcp::endpoint &ep : candidates) {
        if (impl_->acceptor.is_open()) impl_->acceptor.close(ec);
        ec.clear();
        impl_->acceptor.open(ep.protocol(), ec);
        if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) impl_->acceptor.bind(ep, ec);
        if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (!ec) break;
    }
    if (ec || !impl_->acceptor.is_open())
        throw std::runtime_error("cannot listen on " + options.host + ":" +
                                 std::to_string(options.port) + ": " +
                                 (ec ? ec.message() : std::string("no address")));
}

server::~server() = default;

int server::port() const {
    return impl_->acceptor.local_endpoint().port();
}

std::string server::url() const {
    std::string host = impl_->opt.host;
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return (impl_->tls ? "https://" : "http://") + host + ":" + std::to_string(port());
}

std::string server::tls_fingerprint() const {
    return impl_->tls_fingerprint;
}

// The TLS context from the certificate and key given, or from the self-signed one kept for this
// host's names. Throws std::runtime_error naming the file and what is wrong with it.
void server::impl::setup_tls() {
    tls_files files{opt.tls_cert, opt.tls_key};
    if (opt.tls_cert.empty()) {
        bool made = false;
        std::vector<std::string> names = self_signed_names(opt.host, opt.allowed_hosts);
        if (std::string err = ensure_self_signed(opt.tls_dir, names, &files, &made); !err.empty())
            throw std::runtime_error(err);
        std::string list;
        for (const std::string &n : names)
            list += (list.empty() ? "" : ", ") + n;
        log_info("tls: %s self-signed certificate %s (for %s)", made ? "made a" : "using the",
                 files.cert.c_str(), list.c_str());
    }
    std::string err;
    tls_fingerprint = cert_fingerprint(files.cert, &err);
    if (tls_fingerprint.empty()) throw std::runtime_error("tls: " + err);
    tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    tls->use_certificate_chain_file(files.cert, ec);
    if (ec) throw std::runtime_error("tls: certificate " + files.cert + ": " + ec.message());
    tls->use_private_key_file(files.key, ssl::context::pem, ec);
    if (ec) throw std::runtime_error("tls: key " + files.key + ": " + ec.message());
    if (SSL_CTX_check_private_key(tls->native_handle()) != 1)
        throw std::runtime_error("tls: the key " + files.key + " is not the certificate's (" +
                                 files.cert + ")");
    log_info("tls: certificate SHA-256 fingerprint %s", tls_fingerprint.c_str());
}

void server::run() {
    // SIGTERM drains (a second one, or SIGINT, stops at once).
    std::function<void(beast::error_code, int)> on_signal = [this, &on_signal](beast::error_code ec,
                                                                               int sig) {
        if (ec) return;
        if (sig == SIGTERM && !impl_->draining && impl_->opt.drain_seconds > 0) {
            impl_->drain();
            impl_->signals.async_wait(on_signal);
            return;
        }
        impl_->shutdown();
    };
    impl_->signals.async_wait(on_signal);
    impl_->accept();
    impl_->housekeeping();
    std::vector<std::jthread> threads;
    int slice = impl_->opt.io_slice_us;
    if (std::string err = set_thread_slice(slice); !err.empty())
        log_warn("io threads: the kernel refused a %d us scheduler slice (%s)", slice, err.c_str());
    else if (slice > 0)
        log_debug("io threads: %d us scheduler slices", slice);
    // Woken to send a reply, a SCHED_FIFO I/O thread takes a core at once; on busy cores a normal
    // thread can wait for a tick. Asked once here; the other I/O threads get what this one got.
    realtime_grant rt = request_thread_realtime(impl_->opt.io_rt_priority);
    if (rt.priority > 0) {
        log_info("io threads: real-time priority %d (SCHED_FIFO)", rt.priority);
    } else if (impl_->opt.io_rt_priority > 0) {
        log_warn("io threads: the kernel refused real-time priority %d (%s; it needs CAP_SYS_NICE "
                 "or an RLIMIT_RTPRIO of %d): they run under the normal policy",
                 rt.tried, rt.error.c_str(), rt.tried);
    } else if (rt.tried > 0) {
        log_info("io threads: normal policy (real-time priority %d: %s; a reply's messages can "
                 "wait a scheduler tick on busy cores)",
                 rt.tried, rt.error.c_str());
    }
    for (int i = 1; i < std::max(1, impl_->opt.io_threads); ++i)
        threads.emplace_back([this, slice, priority = rt.priority] {
            set_thread_name("io");
            set_thread_slice(slice);
            set_thread_realtime(priority);
            impl_->ioc.run();
        });
    impl_->ioc.run();
    for (auto &t : threads)
        t.join();
    // Sessions closed by a stop() without a signal.
    impl_->shutdown();
    std::set<std::shared_ptr<ws_conn_base>> rest;
    {
        std::lock_guard lock(impl_->conns_m);
        rest.swap(impl_->conns);
    }
    for (auto &c : rest)
        c->close_session();
}

void server::stop() {
    asio::post(impl_->ioc, [this] { impl_->shutdown(); });
}

} // namespace parley
