// Persistent sessions and turns in SQLite (WAL journal).
//
// One connection guarded by a mutex: every method is thread-safe. A turn is written in one
// transaction when it ends, so a crash or SIGTERM never leaves half a turn, and WAL keeps
// readers (GET /sessions/{id}) from waiting on writers. Errors throw store_error.
#pragma once

#include "core/guard.h"
#include "llm/conversation.h"

#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;

namespace parley {

struct store_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr int STORE_SCHEMA_VERSION = 2; // SQLite's user_version (store.cpp lists the steps)

class store {
  public:
    // ":memory:" for a private in-memory store. Brings an older schema up to date; a newer one
    // is refused (store_error).
    explicit store(const std::string &path);
    ~store();
    store(const store &) = delete;
    store &operator=(const store &) = delete;

    // token_sha256: secret_hash() of the session's resume token (empty: none).
    void create_session(const std::string &id, const std::string &token_sha256 = {});
    bool session_exists(const std::string &id);
    // The stored hash of the session's resume token: nullopt when there is no such session,
    // empty when it has none.
    std::optional<std::string> session_token_hash(const std::string &id);
    std::vector<turn_record> load_turns(const std::string &session_id);
    void append_turn(const std::string &session_id, const turn_record &turn);
    int64_t count_turns();

    // Why the last write failed; empty when it succeeded (/health).
    std::string failure() const;
    // Is the file behind the open database still the one at its path? When it was removed or
    // replaced (its folder deleted, say), makes a new database there and bumps generation():
    // the live sessions write their histories again. Returns failure(). Called every few
    // seconds by the server.
    std::string check_file();
    // How many times the database was made anew since start.
    uint64_t generation() const;

  private:
    struct file_identity {
        bool known = false;
        uint64_t dev = 0, ino = 0;
    };
    static file_identity file_id(const std::string &path);
    void open_db();
    void exec(const char *sql);
    void migrate();
    template <class F> auto write(F &&f); // under m_: records failure_
    mutable std::mutex m_;
    std::string path_;
    sqlite3 *db_ = nullptr;
    file_identity file_;
    std::string failure_;
    uint64_t generation_ = 0;
};

// Opens the store at `path` (its folder made when missing). When the file cannot be used (no
// database, a newer schema) and `recover` is set, the file and its -wal and -shm are renamed to
// PATH.corrupt-UNIXTIME and a new store is made; `moved` (may be null) gets the new name, empty
// when nothing was moved. Otherwise the store_error goes to the caller.
std::unique_ptr<store> open_store(const std::string &path, bool recover, std::string *moved);

// Runs one call on the store (core/guard.h): a failure (a store_error, a full disk, a changed
// schema, memory) is logged in one line and returned as its message; empty on success. Every
// caller outside the store goes through this.
template <class F> std::string store_call(const char *what, F &&call) {
    return run_guarded(std::string("store: ") + what, std::forward<F>(call));
}

} // namespace parley
