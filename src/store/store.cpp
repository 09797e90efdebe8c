#include "store/store.h"

#include <sqlite3.h>

#include "core/clock.h"
#include "core/log.h"

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <type_traits>

namespace parley {

namespace {

struct stmt {
    sqlite3_stmt *s = nullptr;
    stmt(sqlite3 *db, const char *sql) {
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
            throw store_error(std::string("sqlite: ") + sqlite3_errmsg(db));
    }
    ~stmt() { sqlite3_finalize(s); }
    void bind(int i, const std::string &v) {
        sqlite3_bind_text(s, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    }
    void bind(int i, int64_t v) { sqlite3_bind_int64(s, i, v); }
    std::string text(int i) {
        auto p = reinterpret_cast<const char *>(sqlite3_column_text(s, i));
        return p ? std::string(p, size_t(sqlite3_column_bytes(s, i))) : std::string();
    }
};

} // namespace

sqlite_store::sqlite_store(const std::string &path) : path_(path) {
    open_db();
}

void sqlite_store::open_db() {
    if (sqlite3_open_v2(path_.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        nullptr) != SQLITE_OK) {
        std::string err = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw store_error("cannot open database " + path_ + ": " + err);
    }
    try {
        sqlite3_busy_timeout(db_, 5000);
        exec("PRAGMA journal_mode=WAL");
        exec("PRAGMA synchronous=NORMAL");
        migrate();
    } catch (const store_error &e) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        sqlite3_close(db_);
        db_ = nullptr;
        throw store_error("database " + path_ + ": " + e.what());
    }
    file_ = file_id(path_);
}

// The schema's version is SQLite's user_version: 0 an empty file, each step one version up, in
// one transaction, so a file is either at a version or not touched.
//   1: sessions (id, created_ms) and turns
//   2: sessions.token_sha256: the hash of the session's resume token (NULL: none, its history
//      is read with the API key only)
//   3: sessions.holder: the connection that writes the session's turns (store.h)
void sqlite_store::migrate() {
    stmt v(db_, "PRAGMA user_version");
    int version = sqlite3_step(v.s) == SQLITE_ROW ? sqlite3_column_int(v.s, 0) : 0;
    if (version > STORE_SCHEMA_VERSION)
        throw store_error("the database's schema is version " + std::to_string(version) +
                          ", newer than this Parley's (" + std::to_string(STORE_SCHEMA_VERSION) +
                          ")");
    if (version < 1) {
        exec("BEGIN IMMEDIATE");
        exec("CREATE TABLE IF NOT EXISTS sessions ("
             " id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL)");
        exec("CREATE TABLE IF NOT EXISTS turns ("
             " session_id TEXT NOT NULL REFERENCES sessions(id), turn_id INTEGER NOT NULL,"
             " user_text TEXT NOT NULL, reply_text TEXT NOT NULL, interrupted INTEGER NOT NULL,"
             " timings TEXT NOT NULL, created_ms INTEGER NOT NULL,"
             " PRIMARY KEY (session_id, turn_id))");
        exec("PRAGMA user_version = 1");
        exec("COMMIT");
    }
    if (version < 2) {
        exec("BEGIN IMMEDIATE");
        exec("ALTER TABLE sessions ADD COLUMN token_sha256 TEXT");
        exec("PRAGMA user_version = 2");
        exec("COMMIT");
    }
    if (version < 3) {
        exec("BEGIN IMMEDIATE");
        exec("ALTER TABLE sessions ADD COLUMN holder TEXT");
        exec("PRAGMA user_version = 3");
        exec("COMMIT");
    }
}

sqlite_store::~sqlite_store() {
    sqlite3_close(db_);
}

sqlite_store::file_identity sqlite_store::file_id(const std::string &path) {
    struct stat st;
    if (path == ":memory:" || path.empty() || ::stat(path.c_str(), &st) != 0) return {};
    return {true, uint64_t(st.st_dev), uint64_t(st.st_ino)};
}

template <class F> auto sqlite_store::write(F &&f) {
    try {
        if (!db_) throw store_error("no database at " + path_ + " (" + failure_ + ")");
        if constexpr (std::is_void_v<decltype(f())>) {
            f();
            failure_.clear();
        } else {
            auto r = f();
            failure_.clear();
            return r;
        }
    } catch (const std::exception &e) {
        failure_ = e.what();
        throw;
    }
}

std::string sqlite_store::failure() const {
    std::lock_guard lock(m_);
    return failure_;
}

uint64_t sqlite_store::generation() const {
    std::lock_guard lock(m_);
    return generation_;
}

std::string sqlite_store::check_file() {
    std::lock_guard lock(m_);
    if (path_ == ":memory:" || !file_.known) return failure_;
    file_identity now = file_id(path_);
    if (now.known && now.dev == file_.dev && now.ino == file_.ino) return failure_;
    // The file behind the open handle was removed or replaced: writes would go to a file nobody
    // can open again. A new database at the path; the sessions write their histories again.
    log_error("store: %s was removed or replaced while open: making a new database there; the "
              "live sessions write their histories again, the others' are lost",
              path_.c_str());
    sqlite3_close(db_);
    db_ = nullptr;
    try {
        namespace fs = std::filesystem;
        if (fs::path p(path_); p.has_parent_path()) fs::create_directories(p.parent_path());
        open_db();
        ++generation_;
        failure_.clear();
    } catch (const std::exception &e) {
        failure_ =
            std::string("the database file was removed and cannot be made again: ") + e.what();
        log_error("store: %s", failure_.c_str());
    }
    return failure_;
}

void sqlite_store::exec(const char *sql) {
    char *err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : "unknown error";
        sqlite3_free(err);
        throw store_error("sqlite: " + msg);
    }
}

void sqlite_store::create_session(const std::string &id, const std::string &token_sha256,
                                  const std::string &holder) {
    std::lock_guard lock(m_);
    write([&] {
        stmt s(db_, "INSERT OR IGNORE INTO sessions (id, created_ms, token_sha256, holder)"
                    " VALUES (?, ?, ?, ?)");
        s.bind(1, id);
        s.bind(2, unix_ms());
        if (token_sha256.empty())
            sqlite3_bind_null(s.s, 3);
        else
            s.bind(3, token_sha256);
        if (holder.empty())
            sqlite3_bind_null(s.s, 4);
        else
            s.bind(4, holder);
        if (sqlite3_step(s.s) != SQLITE_DONE)
            throw store_error(std::string("sqlite: ") + sqlite3_errmsg(db_));
    });
}

bool sqlite_store::claim_session(const std::string &id, const std::string &holder) {
    std::lock_guard lock(m_);
    return write([&] {
        stmt s(db_, "UPDATE sessions SET holder = ? WHERE id = ?");
        s.bind(1, holder);
        s.bind(2, id);
        if (sqlite3_step(s.s) != SQLITE_DONE)
            throw store_error(std::string("sqlite: ") + sqlite3_errmsg(db_));
        return sqlite3_changes(db_) > 0;
    });
}

std::optional<std::string> sqlite_store::session_token_hash(const std::string &id) {
    std::lock_guard lock(m_);
    if (!db_) throw store_error("no database at " + path_ + " (" + failure_ + ")");
    stmt s(db_, "SELECT token_sha256 FROM sessions WHERE id = ?");
    s.bind(1, id);
    if (sqlite3_step(s.s) != SQLITE_ROW) return std::nullopt;
    return s.text(0);
}

std::vector<turn_record> sqlite_store::load_turns(const std::string &session_id) {
    std::lock_guard lock(m_);
    if (!db_) throw store_error("no database at " + path_ + " (" + failure_ + ")");
    stmt s(db_, "SELECT turn_id, user_text, reply_text, interrupted, timings, created_ms FROM turns"
                " WHERE session_id = ? ORDER BY turn_id");
    s.bind(1, session_id);
    std::vector<turn_record> out;
    while (sqlite3_step(s.s) == SQLITE_ROW) {
        turn_record t;
        t.turn_id = sqlite3_column_int64(s.s, 0);
        t.user = s.text(1);
        t.assistant = s.text(2);
        t.interrupted = sqlite3_column_int(s.s, 3) != 0;
        t.timings_json = s.text(4);
        t.created_ms = sqlite3_column_int64(s.s, 5);
        out.push_back(std::move(t));
    }
    return out;
}

bool sqlite_store::append_turn(const std::string &session_id, const turn_record &t,
                               const std::string &holder) {
    std::lock_guard lock(m_);
    return write([&] {
        // One transaction: another process on the same file cannot claim the session between
        // the check and the write.
        exec("BEGIN IMMEDIATE");
        try {
            if (!holder.empty()) {
                stmt h(db_, "SELECT holder FROM sessions WHERE id = ?");
                h.bind(1, session_id);
                if (sqlite3_step(h.s) == SQLITE_ROW && sqlite3_column_type(h.s, 0) != SQLITE_NULL &&
                    h.text(0) != holder) {
                    exec("ROLLBACK");
                    return false;
                }
            }
            stmt s(db_, "INSERT OR REPLACE INTO turns (session_id, turn_id, user_text, reply_text,"
                        " interrupted, timings, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
            s.bind(1, session_id);
            s.bind(2, t.turn_id);
            s.bind(3, t.user);
            s.bind(4, t.assistant);
            s.bind(5, int64_t(t.interrupted));
            s.bind(6, t.timings_json.empty() ? std::string("{}") : t.timings_json);
            s.bind(7, t.created_ms ? t.created_ms : unix_ms());
            if (sqlite3_step(s.s) != SQLITE_DONE)
                throw store_error(std::string("sqlite: ") + sqlite3_errmsg(db_));
            exec("COMMIT");
            return true;
        } catch (...) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    });
}

std::unique_ptr<store> open_store(const std::string &path, bool recover, std::string *moved) {
    namespace fs = std::filesystem;
    if (moved) moved->clear();
    if (is_postgres_url(path)) return make_postgres_store(path);
    if (fs::path p(path); p.has_parent_path() && path != ":memory:")
        fs::create_directories(p.parent_path());
    try {
        return std::make_unique<sqlite_store>(path);
    } catch (const store_error &) {
        if (!recover || path == ":memory:") throw;
    }
    std::string aside = path + ".corrupt-" + std::to_string(unix_ms() / 1000);
    std::error_code ec;
    fs::rename(path, aside, ec);
    if (ec) throw store_error("cannot move " + path + " aside: " + ec.message());
    for (const char *suffix : {"-wal", "-shm"})
        if (fs::exists(path + suffix)) fs::rename(path + suffix, aside + suffix, ec);
    if (moved) *moved = aside;
    return std::make_unique<sqlite_store>(path);
}

int64_t sqlite_store::count_turns() {
    std::lock_guard lock(m_);
    if (!db_) throw store_error("no database at " + path_ + " (" + failure_ + ")");
    stmt s(db_, "SELECT COUNT(*) FROM turns");
    return sqlite3_step(s.s) == SQLITE_ROW ? sqlite3_column_int64(s.s, 0) : 0;
}

} // namespace parley
