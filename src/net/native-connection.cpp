#include "net/native-protocol.h"

#include "core/clock.h"

#include <cstring>

namespace parley {

namespace {

// The session's events, encoded for the connection's output.
class native_encoder : public session_sink {
  public:
    explicit native_encoder(std::shared_ptr<ws_output> out) : out_(std::move(out)) {}
    void on_event(session_event e) override {
        // What to send instead, in this protocol's words.
        if (auto *err = std::get_if<error_event>(&e); err && err->code == "not_started")
            err->message += ": send {\"type\":\"start\",\"sample_rate\":...} first";
        std::string message = encode_event(e);
        if (message.empty()) return;
        out_->send_text(std::move(message));
        if (auto *c = std::get_if<reply_chunk_event>(&e); c && c->has_audio)
            out_->send_binary(encode_pcm(c->pcm));
    }
    void hold() override { out_->hold(); }
    void flush() override { out_->flush(); }
    void end(const std::string &reason) override { out_->end(reason); }

  private:
    std::shared_ptr<ws_output> out_;
};

} // namespace

native_connection::native_connection(const session_engines &engines, const session_config &config,
                                     std::shared_ptr<ws_output> out)
    : session_(std::make_shared<session>(engines, config,
                                         std::make_shared<native_encoder>(std::move(out)))) {}

native_connection::~native_connection() {
    close();
}

void native_connection::open(const std::string &resume_id) {
    session_->open(resume_id);
}

void native_connection::close() {
    session_->close();
}

std::string native_connection::id() const {
    return session_->id();
}

void native_connection::store_changed() {
    session_->store_changed();
}

void native_connection::drain(std::function<void()> ready) {
    session_->drain(std::move(ready));
}

std::string native_connection::error_message(const std::string &code, const std::string &message) {
    return encode_error(code, message);
}

void native_connection::on_text(std::string_view message) {
    mono_time t_recv = mono_now();
    auto parsed = parse_client_message(message);
    if (auto *err = std::get_if<protocol_error>(&parsed)) {
        session_->reject(err->code, err->message);
        return;
    }
    client_message &m = std::get<client_message>(parsed);
    switch (m.type) {
    case CLIENT_MSG_START:
        session_->start(m.start);
        break;
    case CLIENT_MSG_STOP:
        session_->stop(t_recv);
        break;
    case CLIENT_MSG_TEXT:
        session_->text(std::move(m.text), t_recv);
        break;
    case CLIENT_MSG_INTERRUPT:
        session_->interrupt(t_recv);
        break;
    case CLIENT_MSG_PLAYBACK:
        session_->playback(m.playback);
        break;
    }
}

void native_connection::on_binary(std::string_view bytes) {
    protocol_error err;
    if (!check_audio_frame(bytes.size(), &err).empty()) {
        session_->reject(err.code, err.message);
        return;
    }
    std::vector<int16_t> pcm(bytes.size() / 2);
    std::memcpy(pcm.data(), bytes.data(), pcm.size() * 2);
    session_->audio(std::move(pcm));
}

} // namespace parley
