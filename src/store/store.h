// Persistent sessions and turns: SQLite (one file, the default) or PostgreSQL (a store that
// several Parley nodes share).
//
// Every method is thread-safe. A turn is written in one transaction when it ends, so a crash or
// SIGTERM never leaves half a turn. Errors throw store_error.
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

// The schema's version: SQLite's user_version, PostgreSQL's parley_schema table (store.cpp and
// store-postgres.cpp list the steps; both have the same tables at the same version).
constexpr int STORE_SCHEMA_VERSION = 3;

class store {
  public:
    virtual ~store() = default;

    // A session's turns are written by one holder at a time: the connection, on whichever node,
    // that resumed it last. A holder is any string unique to that connection (empty: none, the
    // write is not checked). This fences off a node that still runs the session after its
    // client went to another node (a drain, a network cut): its late writes would otherwise
    // replace turns written since, under the same turn ids.
    //
    // token_sha256: secret_hash() of the session's resume token (empty: none).
    virtual void create_session(const std::string &id, const std::string &token_sha256 = {},
                                const std::string &holder = {}) = 0;
    // Makes `holder` the session's holder; false when there is no such session.
    virtual bool claim_session(const std::string &id, const std::string &holder) = 0;
    // The stored hash of the session's resume token: nullopt when there is no such session,
    // empty when it has none.
    virtual std::optional<std::string> session_token_hash(const std::string &id) = 0;
    virtual std::vector<turn_record> load_turns(const std::string &session_id) = 0;
    // Durable when it returns (committed); writing the same turn again replaces it. False (and
    // nothing written) when the session has another holder than `holder`.
    virtual bool append_turn(const std::string &session_id, const turn_record &turn,
                             const std::string &holder = {}) = 0;
    virtual int64_t count_turns() = 0;

    // Why the last write failed; empty when it succeeded (/health).
    virtual std::string failure() const = 0;
    // Called every second or so by the server. SQLite: is the file behind the open database
    // still the one at its path? When it was removed or replaced (its folder deleted, say),
    // makes a new database there and bumps generation(): the live sessions write their
    // histories again. Returns failure().
    virtual std::string check_file() { return failure(); }
    // How many times the database was made anew since start.
    virtual uint64_t generation() const { return 0; }
    // What the store is, for logs: a file's path, or a PostgreSQL URL without its password.
    virtual std::string describe() const = 0;
};

// SQLite, WAL journal: one connection guarded by a mutex; WAL keeps readers (GET /sessions/{id})
// from waiting on writers.
class sqlite_store : public store {
  public:
    // ":memory:" for a private in-memory store. Brings an older schema up to date; a newer one
    // is refused (store_error).
    explicit sqlite_store(const std::string &path);
    ~sqlite_store() override;
    sqlite_store(const sqlite_store &) = delete;
    sqlite_store &operator=(const sqlite_store &) = delete;

    void create_session(const std::string &id, const std::string &token_sha256 = {},
                        const std::string &holder = {}) override;
    bool claim_session(const std::string &id, const std::string &holder) override;
    std::optional<std::string> session_token_hash(const std::string &id) override;
    std::vector<turn_record> load_turns(const std::string &session_id) override;
    bool append_turn(const std::string &session_id, const turn_record &turn,
                     const std::string &holder = {}) override;
    int64_t count_turns() override;
    std::string failure() const override;
    std::string check_file() override;
    uint64_t generation() const override;
    std::string describe() const override { return path_; }

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

// Is `where` a PostgreSQL connection URL (postgresql:// or postgres://)?
bool is_postgres_url(const std::string &where);
// The URL with its password (if any) replaced by "***", for logs and messages.
std::string redact_url(const std::string &url);
// A PostgreSQL store at a libpq connection URL (store-postgres.cpp): the schema is made or
// brought up to date at once (store_error when the server cannot be reached or has a newer
// schema).
std::unique_ptr<store> make_postgres_store(const std::string &url);

// Opens the store at `path`: a PostgreSQL URL, or an SQLite file (its folder made when
// missing). When the file cannot be used (no database, a newer schema) and `recover` is set, the
// file and its -wal and -shm are renamed to PATH.corrupt-UNIXTIME and a new store is made;
// `moved` (may be null) gets the new name, empty when nothing was moved. Otherwise the
// store_error goes to the caller (PostgreSQL: always; nothing there is moved aside).
std::unique_ptr<store> open_store(const std::string &path, bool recover, std::string *moved);

// Runs one call on the store (core/guard.h): a failure (a store_error, a full disk, a changed
// schema, memory) is logged in one line and returned as its message; empty on success. Every
// caller outside the store goes through this.
template <class F> std::string store_call(const char *what, F &&call) {
    return run_guarded(std::string("store: ") + what, std::forward<F>(call));
}

} // namespace parley
