// The store in PostgreSQL (libpqxx): what several Parley nodes share, so any node resumes any
// session.
//
// One connection, guarded by a mutex (a turn is one short transaction). A connection that broke
// (the server restarted, a network cut) is made again and the statement tried once more; when
// the server is still away the call throws store_error, and the session keeps the turn and
// writes it again later (session-store.cpp), so a turn is never dropped silently. Every write is
// idempotent (a session's row once, a turn replaced by its key), so a write that was committed
// but not acknowledged is harmless to repeat.
#include "store/store.h"

#include "core/clock.h"
#include "core/log.h"
#include "text/utf8.h"

#include <pqxx/pqxx>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <type_traits>

namespace parley {

namespace {

// PostgreSQL's text takes valid UTF-8 without NUL bytes: what is not is stored as U+FFFD, a NUL
// dropped (SQLite keeps the bytes as they are).
std::string pg_text(const std::string &s) {
    std::string out = utf8_valid(s) ? s : utf8_sanitize(s);
    std::erase(out, '\0');
    return out;
}

// Two schema migrations never run at once, from any node: one advisory lock, held by the
// step's transaction.
constexpr int64_t MIGRATION_LOCK = 0x7061726c6579; // "parley"

// Errors after which the connection is no good: connection exceptions (SQLSTATE class 08) and
// operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
bool connection_lost(const pqxx::sql_error &e) {
    std::string_view state = e.sqlstate();
    return state.starts_with("08") || state.starts_with("57P");
}

class postgres_store : public store {
  public:
    explicit postgres_store(const std::string &url) : url_(url), shown_(redact_url(url)) {
        {
            std::lock_guard lock(m_);
            call([&](pqxx::connection &) { migrate(); });
        }
        prober_ = std::thread([this] { probe_loop(); });
    }

    ~postgres_store() override {
        {
            std::lock_guard lock(m_);
            stopping_ = true;
        }
        wake_.notify_all();
        prober_.join();
    }

    void create_session(const std::string &id, const std::string &token_sha256,
                        const std::string &holder) override {
        write([&](pqxx::connection &c) {
            pqxx::work tx(c);
            std::optional<std::string> token, by;
            if (!token_sha256.empty()) token = token_sha256;
            if (!holder.empty()) by = holder;
            tx.exec("INSERT INTO sessions (id, created_ms, token_sha256, holder)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                    pqxx::params{id, unix_ms(), token, by});
            tx.commit();
        });
    }

    bool claim_session(const std::string &id, const std::string &holder) override {
        return write([&](pqxx::connection &c) {
            pqxx::work tx(c);
            auto r =
                tx.exec("UPDATE sessions SET holder = $2 WHERE id = $1", pqxx::params{id, holder});
            tx.commit();
            return r.affected_rows() > 0;
        });
    }

    std::optional<std::string> session_token_hash(const std::string &id) override {
        return read([&](pqxx::connection &c) -> std::optional<std::string> {
            pqxx::nontransaction tx(c);
            auto r = tx.exec("SELECT token_sha256 FROM sessions WHERE id = $1", pqxx::params{id});
            if (r.empty()) return std::nullopt;
            return r[0][0].is_null() ? std::string() : r[0][0].as<std::string>();
        });
    }

    std::vector<turn_record> load_turns(const std::string &session_id) override {
        return read([&](pqxx::connection &c) {
            pqxx::nontransaction tx(c);
            auto r = tx.exec("SELECT turn_id, user_text, reply_text, interrupted, timings,"
                             " created_ms FROM turns WHERE session_id = $1 ORDER BY turn_id",
                             pqxx::params{session_id});
            std::vector<turn_record> out;
            out.reserve(size_t(r.size()));
            for (const auto &row : r) {
                turn_record t;
                t.turn_id = row[0].as<int64_t>();
                t.user = row[1].as<std::string>();
                t.assistant = row[2].as<std::string>();
                t.interrupted = row[3].as<bool>();
                t.timings_json = row[4].as<std::string>();
                t.created_ms = row[5].as<int64_t>();
                out.push_back(std::move(t));
            }
            return out;
        });
    }

    bool append_turn(const std::string &session_id, const turn_record &t,
                     const std::string &holder) override {
        return write([&](pqxx::connection &c) {
            pqxx::work tx(c);
            if (!holder.empty()) {
                // The row's lock keeps a claim from another node out until this commits.
                auto h = tx.exec("SELECT holder FROM sessions WHERE id = $1 FOR SHARE",
                                 pqxx::params{session_id});
                if (!h.empty() && !h[0][0].is_null() && h[0][0].as<std::string>() != holder)
                    return false;
            }
            tx.exec("INSERT INTO turns (session_id, turn_id, user_text, reply_text, interrupted,"
                    " timings, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (session_id, turn_id) DO UPDATE SET"
                    " user_text = excluded.user_text, reply_text = excluded.reply_text,"
                    " interrupted = excluded.interrupted, timings = excluded.timings,"
                    " created_ms = excluded.created_ms",
                    pqxx::params{
                        session_id, t.turn_id, pg_text(t.user), pg_text(t.assistant), t.interrupted,
                        t.timings_json.empty() ? std::string("{}") : pg_text(t.timings_json),
                        t.created_ms ? t.created_ms : unix_ms()});
            tx.commit();
            return true;
        });
    }

    int64_t count_turns() override {
        return read([&](pqxx::connection &c) {
            pqxx::nontransaction tx(c);
            return tx.exec("SELECT COUNT(*) FROM turns").one_field().as<int64_t>();
        });
    }

    std::string failure() const override {
        std::lock_guard lock(m_);
        return failure_;
    }

    std::string describe() const override { return shown_; }

  private:
    // Runs f on a live connection (made when there is none); once more on a new connection
    // when the first one turns out to be broken. Throws store_error.
    template <class F> std::invoke_result_t<F, pqxx::connection &> call(F &&f) {
        for (int attempt = 0;; ++attempt) {
            try {
                if (!conn_ || !conn_->is_open()) connect();
                return f(*conn_);
            } catch (const pqxx::broken_connection &e) {
                conn_.reset();
                if (attempt > 0) throw store_error(message("the connection broke", e));
            } catch (const pqxx::in_doubt_error &e) {
                conn_.reset(); // the write is idempotent: do it again on a new connection
                if (attempt > 0) throw store_error(message("a commit's outcome is unknown", e));
            } catch (const pqxx::sql_error &e) {
                if (!connection_lost(e)) throw store_error(message("", e));
                conn_.reset();
                if (attempt > 0) throw store_error(message("the connection broke", e));
            } catch (const pqxx::failure &e) {
                if (conn_ && conn_->is_open()) throw store_error(message("", e));
                conn_.reset();
                if (attempt > 0) throw store_error(message("the connection broke", e));
            }
        }
    }

    template <class F> std::invoke_result_t<F, pqxx::connection &> read(F &&f) {
        std::lock_guard lock(m_);
        return call(std::forward<F>(f));
    }

    template <class F> std::invoke_result_t<F, pqxx::connection &> write(F &&f) {
        std::lock_guard lock(m_);
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<F, pqxx::connection &>>) {
                call(std::forward<F>(f));
                failure_.clear();
            } else {
                auto r = call(std::forward<F>(f));
                failure_.clear();
                return r;
            }
        } catch (const store_error &e) {
            failure_ = e.what();
            throw;
        }
    }

    void connect() {
        conn_.reset();
        try {
            conn_ = std::make_unique<pqxx::connection>(with_defaults(url_));
        } catch (const std::exception &e) {
            throw store_error(message("cannot connect", e));
        }
    }

    std::string message(const char *what, const std::exception &e) const {
        std::string reason = e.what();
        while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' '))
            reason.pop_back();
        return "PostgreSQL at " + shown_ + ": " + (*what ? std::string(what) + ": " : "") + reason;
    }

    // /health must turn healthy when the server is back even while no session writes (a load
    // balancer that takes a failing node out of rotation sends it no session that would): a
    // store that failed is probed every second, on a thread of its own, with a connection of its
    // own (a connection attempt may wait for its timeout; the server's thread never does).
    void probe_loop() {
        std::unique_lock lock(m_);
        while (!stopping_) {
            wake_.wait_for(lock, std::chrono::seconds(1));
            if (stopping_ || failure_.empty()) continue;
            std::string failed = failure_;
            lock.unlock();
            bool up = false;
            try {
                pqxx::connection probe(with_defaults(url_));
                pqxx::nontransaction tx(probe);
                tx.exec("SELECT 1 FROM parley_schema");
                up = true;
            } catch (const std::exception &) {
            }
            lock.lock();
            if (up && failure_ == failed) {
                log_info("store: PostgreSQL at %s answers again", shown_.c_str());
                failure_.clear();
            }
        }
    }

    // A connection attempt gives up after 5 s unless the URL says otherwise, and names Parley
    // in pg_stat_activity.
    static std::string with_defaults(const std::string &url) {
        std::string out = url;
        char sep = url.find('?') == std::string::npos ? '?' : '&';
        if (url.find("connect_timeout=") == std::string::npos) {
            out += sep + std::string("connect_timeout=5");
            sep = '&';
        }
        if (url.find("application_name=") == std::string::npos)
            out += sep + std::string("fallback_application_name=parley");
        return out;
    }

    // The schema's version is the one row of parley_schema; each step one version up, in its
    // own transaction under the migration lock, so a database is either at a version or not
    // touched, and two nodes starting together migrate once.
    //   1: sessions (id, created_ms) and turns
    //   2: sessions.token_sha256: the hash of the session's resume token (NULL: none, its
    //      history is read with the API key only)
    //   3: sessions.holder: the connection that writes the session's turns (store.h)
    void migrate() {
        for (;;) {
            pqxx::work tx(*conn_);
            tx.exec("SELECT pg_advisory_xact_lock($1)", pqxx::params{MIGRATION_LOCK});
            tx.exec("CREATE TABLE IF NOT EXISTS parley_schema (version integer NOT NULL)");
            auto r = tx.exec("SELECT version FROM parley_schema");
            if (r.size() > 1)
                throw store_error("PostgreSQL at " + shown_ +
                                  ": parley_schema has more than one row; fix it by hand");
            int version = r.empty() ? 0 : r[0][0].as<int>();
            if (r.empty()) tx.exec("INSERT INTO parley_schema (version) VALUES (0)");
            if (version > STORE_SCHEMA_VERSION)
                throw store_error("PostgreSQL at " + shown_ +
                                  ": the database's schema is version " + std::to_string(version) +
                                  ", newer than this Parley's (" +
                                  std::to_string(STORE_SCHEMA_VERSION) + ")");
            if (version == STORE_SCHEMA_VERSION) {
                tx.commit();
                return;
            }
            if (version == 0) {
                tx.exec("CREATE TABLE sessions (id text PRIMARY KEY, created_ms bigint NOT NULL)");
                tx.exec("CREATE TABLE turns (session_id text NOT NULL REFERENCES sessions(id),"
                        " turn_id bigint NOT NULL, user_text text NOT NULL,"
                        " reply_text text NOT NULL, interrupted boolean NOT NULL,"
                        " timings text NOT NULL, created_ms bigint NOT NULL,"
                        " PRIMARY KEY (session_id, turn_id))");
            } else if (version == 1) {
                tx.exec("ALTER TABLE sessions ADD COLUMN token_sha256 text");
            } else if (version == 2) {
                tx.exec("ALTER TABLE sessions ADD COLUMN holder text");
            }
            tx.exec("UPDATE parley_schema SET version = $1", pqxx::params{version + 1});
            tx.commit();
            log_info("store: PostgreSQL schema at version %d", version + 1);
        }
    }

    mutable std::mutex m_;
    std::string url_;
    std::string shown_;
    std::unique_ptr<pqxx::connection> conn_;
    std::string failure_;
    bool stopping_ = false;
    std::condition_variable wake_;
    std::thread prober_; // last: started once the rest is made
};

} // namespace

std::unique_ptr<store> make_postgres_store(const std::string &url) {
    return std::make_unique<postgres_store>(url);
}

} // namespace parley
