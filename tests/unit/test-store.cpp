// The session store: schema versions and migrations, resume tokens, refusals.
#include "core/secret.h"
#include "pipeline/session-directory.h"
#include "pipeline/session.h"
#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>

using namespace parley;

namespace {

std::string temp_db(const std::string &name) {
    auto dir = std::filesystem::temp_directory_path() / ("parley-store-" + random_hex(6));
    std::filesystem::create_directories(dir);
    return (dir / name).string();
}

void sql(const std::string &path, const char *text) {
    sqlite3 *db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char *err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, text, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
}

int user_version(const std::string &path) {
    sqlite3 *db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_stmt *s = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr);
    int v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

} // namespace

TEST(store, new_database_has_the_current_schema_and_tokens) {
    std::string path = temp_db("new.db");
    {
        sqlite_store db(path);
        db.create_session("s1", secret_hash("token-1"));
        db.create_session("s2");
        EXPECT_EQ(db.session_token_hash("s1"), secret_hash("token-1"));
        EXPECT_EQ(db.session_token_hash("s2"), std::string());
        EXPECT_EQ(db.session_token_hash("nope"), std::nullopt);
    }
    EXPECT_EQ(user_version(path), STORE_SCHEMA_VERSION);
}

TEST(store, a_database_from_before_versions_is_migrated_and_keeps_its_turns) {
    std::string path = temp_db("old.db");
    sql(path, "CREATE TABLE sessions (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);"
              "CREATE TABLE turns (session_id TEXT NOT NULL REFERENCES sessions(id),"
              " turn_id INTEGER NOT NULL, user_text TEXT NOT NULL, reply_text TEXT NOT NULL,"
              " interrupted INTEGER NOT NULL, timings TEXT NOT NULL, created_ms INTEGER NOT NULL,"
              " PRIMARY KEY (session_id, turn_id));"
              "INSERT INTO sessions VALUES ('old', 1);"
              "INSERT INTO turns VALUES ('old', 1, 'hi', 'hello', 0, '{}', 2);");
    ASSERT_EQ(user_version(path), 0);
    {
        sqlite_store db(path);
        auto turns = db.load_turns("old");
        ASSERT_EQ(turns.size(), 1u);
        EXPECT_EQ(turns[0].assistant, "hello");
        // Made before tokens: its history is read with the API key only.
        EXPECT_EQ(db.session_token_hash("old"), std::string());
    }
    EXPECT_EQ(user_version(path), STORE_SCHEMA_VERSION);
    sqlite_store again(path); // a second open changes nothing
    EXPECT_EQ(again.load_turns("old").size(), 1u);
}

TEST(store, a_session_resumed_elsewhere_takes_no_more_turns_from_its_old_holder) {
    std::string path = temp_db("holder.db");
    sqlite_store db(path);
    turn_record t;
    t.turn_id = 1;
    t.user = "hi";
    t.assistant = "hello";
    db.create_session("s", {}, "node-a");
    EXPECT_TRUE(db.append_turn("s", t, "node-a"));
    // Resumed by another connection (another node, or a reconnect here).
    EXPECT_TRUE(db.claim_session("s", "node-b"));
    t.turn_id = 2;
    t.user = "the new holder's turn";
    EXPECT_TRUE(db.append_turn("s", t, "node-b"));
    // The old holder's late write of the same turn id is refused; nothing is replaced.
    turn_record stale = t;
    stale.user = "the old holder's cut turn";
    stale.interrupted = true;
    EXPECT_FALSE(db.append_turn("s", stale, "node-a"));
    auto turns = db.load_turns("s");
    ASSERT_EQ(turns.size(), 2u);
    EXPECT_EQ(turns[1].user, "the new holder's turn");
    EXPECT_FALSE(turns[1].interrupted);
    EXPECT_EQ(db.failure(), ""); // refused is not failing
    // Writes without a holder (tools) and sessions from before holders are not checked.
    EXPECT_TRUE(db.append_turn("s", stale));
    EXPECT_FALSE(db.claim_session("nope", "node-a"));
}

TEST(store, a_newer_schema_is_refused_by_name) {
    std::string path = temp_db("newer.db");
    { sqlite_store db(path); }
    sql(path, "PRAGMA user_version = 99");
    try {
        sqlite_store db(path);
        FAIL() << "opened a schema from a newer Parley";
    } catch (const store_error &e) {
        EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
}

TEST(store, a_file_that_is_no_database_is_refused_with_sqlites_reason) {
    std::string path = temp_db("junk.db");
    std::ofstream(path) << std::string(4096, 'x');
    try {
        sqlite_store db(path);
        FAIL() << "opened a file that is no database";
    } catch (const store_error &e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("not a database"), std::string::npos) << e.what();
    }
}

TEST(session_directory, one_holder_per_id) {
    struct quiet_sink : session_sink {
        void on_event(session_event) override {}
    };
    auto make = [] {
        return std::make_shared<session>(session_engines{}, session_config{},
                                         std::make_shared<quiet_sink>());
    };
    session_directory d;
    auto a = make(), b = make();
    EXPECT_EQ(d.claim("s", a), nullptr);
    EXPECT_EQ(d.claim("s", a), nullptr); // claiming again: no one to take over
    EXPECT_EQ(d.claim("s", b), a);       // b takes it over
    d.release("s", a.get());             // a no longer holds it: nothing happens
    EXPECT_EQ(d.size(), 1u);
    EXPECT_EQ(d.claim("s", a), b);
    d.release("s", a.get());
    EXPECT_EQ(d.size(), 0u);
    d.claim("t", make()); // its holder is gone at once
    EXPECT_EQ(d.claim("t", a), nullptr);
}

TEST(store, postgres_urls_are_recognised_and_shown_without_their_password) {
    EXPECT_TRUE(is_postgres_url("postgresql://parley@db/parley"));
    EXPECT_TRUE(is_postgres_url("postgres://db/parley"));
    EXPECT_FALSE(is_postgres_url("data/parley.db"));
    EXPECT_FALSE(is_postgres_url("mysql://db/parley"));
    EXPECT_EQ(redact_url("postgresql://parley:s3cret@db:5432/parley"),
              "postgresql://parley:***@db:5432/parley");
    EXPECT_EQ(redact_url("postgresql://parley@db/parley"), "postgresql://parley@db/parley");
    EXPECT_EQ(redact_url("postgresql://db/parley?user=u&password=s3cret&sslmode=require"),
              "postgresql://db/parley?user=u&password=***&sslmode=require");
    EXPECT_EQ(redact_url("postgresql://u:p%40ss@[::1]:5432/x"), "postgresql://u:***@[::1]:5432/x");
    // An '@' in the path or query is no user information.
    EXPECT_EQ(redact_url("postgresql://db:5432/x?application_name=a@b"),
              "postgresql://db:5432/x?application_name=a@b");
}
