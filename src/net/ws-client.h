// A WebSocket client on a Boost.Asio event loop, with coroutines: connects (with an API key),
// keeps every message it reads in order with the time it was read, and serialises its writes.
// Used by `parley bench` (its simulated voice clients) and by any C++ code that needs to talk
// to a server as a client does. Event-loop thread only: a connection and its notifier belong
// to the loop that runs them.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/cancel_after.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <regex>
#include <string>
#include <vector>

namespace parley {

namespace ws_client_detail {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using asio::awaitable;
using std::chrono::milliseconds;
using ws_clock = std::chrono::steady_clock;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct ws_target {
    std::string host, port, path, api_key;
};

// ws://host:port/path; empty on success.
inline std::string parse_url(const std::string &url, ws_target &t) {
    static const std::regex re(R"(^ws://([^/:]+)(?::(\d+))?(/.*)?$)");
    std::smatch m;
    if (!std::regex_match(url, m, re)) return "--url must look like ws://host:port/ws";
    t.host = m[1];
    t.port = m[2].matched ? std::string(m[2]) : "80";
    t.path = m[3].matched ? std::string(m[3]) : "/ws";
    return {};
}

// Wakes coroutines that wait for a condition: whoever changes what they wait on calls notify();
// each waiter checks its own condition again. Event-loop thread only.
class notifier {
  public:
    void notify() {
        for (asio::steady_timer *t : waiters_)
            t->cancel();
    }

    // True once pred() holds; false when the deadline passes first.
    awaitable<bool> wait_until(std::function<bool()> pred, ws_clock::time_point deadline) {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        while (!pred()) {
            if (ws_clock::now() >= deadline) co_return false;
            timer.expires_at(deadline);
            waiters_.push_back(&timer);
            co_await timer.async_wait(use_nothrow);
            waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &timer));
        }
        co_return true;
    }

  private:
    std::vector<asio::steady_timer *> waiters_;
};

inline awaitable<void> sleep_for(milliseconds d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(use_nothrow);
}

constexpr milliseconds FOREVER{24 * 3600 * 1000};

inline ws_clock::time_point after(milliseconds d) {
    return ws_clock::now() + d;
}

struct ws_message {
    double t = 0; // ms since the benchmark started, when it was read
    bool binary = false;
    size_t bytes = 0;
    json j;           // text messages
    std::string type; // j["type"], or "audio"
};

// One connection: messages read are kept in `inbox` in order, with their times; writes are
// serialised (a frame of audio and a control message never interleave). Event-loop thread only.
class ws_connection {
  public:
    // write_timeout: a write the server does not take within it ends the connection.
    ws_connection(asio::any_io_executor ex, notifier &events, ws_clock::time_point t0,
                  milliseconds write_timeout)
        : ws_(ex), events_(events), t0_(t0), write_timeout_(write_timeout) {}

    // Empty on success, else why not.
    awaitable<std::string> open(const ws_target &t, milliseconds timeout) {
        tcp::resolver resolver(ws_.get_executor());
        auto [ec, endpoints] = co_await resolver.async_resolve(t.host, t.port, use_nothrow);
        if (ec) co_return "cannot resolve " + t.host + ": " + ec.message();
        auto &stream = beast::get_lowest_layer(ws_);
        stream.expires_after(timeout);
        auto [ec2, ep] = co_await stream.async_connect(endpoints, use_nothrow);
        stream.expires_never();
        if (ec2) co_return "cannot connect to " + t.host + ":" + t.port + ": " + ec2.message();
        stream.socket().set_option(tcp::no_delay(true));
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
        ws_.set_option(
            websocket::stream_base::decorator([key = t.api_key](websocket::request_type &req) {
                req.set(beast::http::field::user_agent, "parley");
                if (!key.empty()) req.set(beast::http::field::authorization, "Bearer " + key);
            }));
        ws_.read_message_max(64u << 20);
        auto [ec3] = co_await ws_.async_handshake(t.host + ":" + t.port, t.path, use_nothrow);
        if (ec3) co_return "WebSocket handshake: " + ec3.message();
        open_ = reading_ = true;
        asio::co_spawn(ws_.get_executor(), read_loop(), asio::detached);
        co_return std::string();
    }

    bool is_open() const { return open_; }

    // Waits for the writes before it; false when the connection is gone.
    awaitable<bool> write(std::string data, bool binary) {
        if (binary && adapt_audio) {
            data = adapt_audio(std::move(data));
            binary = false;
        }
        co_await writes_.wait_until([&] { return !writing_ || !open_; }, after(FOREVER));
        if (!open_) co_return false;
        writing_ = true;
        ws_.binary(binary);
        auto [ec, n] = co_await ws_.async_write(asio::buffer(data),
                                                asio::cancel_after(write_timeout_, use_nothrow));
        writing_ = false;
        writes_.notify();
        if (ec) {
            open_ = false;
            events_.notify();
        }
        co_return !ec;
    }

    awaitable<bool> write_json(const json &j) { co_return co_await write(j.dump(), false); }

    // Closes (a close frame, else the socket) and waits until the reader has ended.
    awaitable<void> close() {
        co_await writes_.wait_until([&] { return !writing_; }, after(milliseconds(3000)));
        if (open_ && !writing_) {
            websocket::stream_base::timeout t{};
            t.handshake_timeout = std::chrono::seconds(3);
            t.idle_timeout = websocket::stream_base::none();
            ws_.set_option(t);
            co_await ws_.async_close(websocket::close_code::normal, use_nothrow);
        }
        open_ = false;
        co_await events_.wait_until([&] { return !reading_; }, after(milliseconds(3000)));
        beast::error_code ec;
        beast::get_lowest_layer(ws_).socket().close(ec);
        co_await events_.wait_until([&] { return !reading_ && !writing_; },
                                    after(milliseconds(3000)));
    }

    std::vector<ws_message> inbox;
    // Another protocol's words: every message read passes through adapt_in before it joins
    // the inbox (it may rename and rewrite it), and every audio frame written through
    // adapt_audio (the text message that carries it).
    std::function<void(ws_message &)> adapt_in;
    std::function<std::string(std::string)> adapt_audio;

  private:
    awaitable<void> read_loop() {
        beast::flat_buffer buf;
        for (;;) {
            auto [ec, n] = co_await ws_.async_read(buf, use_nothrow);
            if (ec) break;
            ws_message m;
            m.t = std::chrono::duration<double, std::milli>(ws_clock::now() - t0_).count();
            m.binary = !ws_.got_text();
            m.bytes = buf.size();
            if (m.binary) {
                m.type = "audio";
            } else {
                m.j = json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
                m.type = m.j.is_object() && m.j.contains("type") && m.j["type"].is_string()
                             ? m.j["type"].get<std::string>()
                             : "?";
            }
            buf.consume(buf.size());
            if (adapt_in) adapt_in(m);
            inbox.push_back(std::move(m));
            events_.notify();
        }
        open_ = false;
        reading_ = false;
        events_.notify();
    }

    websocket::stream<beast::tcp_stream> ws_;
    notifier &events_;
    notifier writes_;
    ws_clock::time_point t0_;
    milliseconds write_timeout_;
    bool open_ = false, reading_ = false, writing_ = false;
};

} // namespace ws_client_detail

using ws_client_detail::after;
using ws_client_detail::FOREVER;
using ws_client_detail::notifier;
using ws_client_detail::parse_url;
using ws_client_detail::sleep_for;
using ws_client_detail::ws_connection;
using ws_client_detail::ws_message;
using ws_client_detail::ws_target;

} // namespace parley
