// Test models made by a generator script at test time, once per build. ctest runs test processes
// in parallel, so each generation holds an exclusive lock (flock on OUT.lock): the first process
// writes OUT.tmp.PID and renames it into place; the others wait on the lock and then find OUT
// fresh. Nobody renames over a folder another process is writing or reading.
#pragma once

#include <gtest/gtest.h>

#include <fcntl.h>
#include <filesystem>
#include <string>
#include <sys/file.h>
#include <unistd.h>
#include <vector>

namespace parley::testing {

// OUT is fresh when STAMP (a file inside OUT, or OUT itself) is at least as new as every input.
// COMMAND gets the path to write appended, quoted. Returns OUT, or an empty path after a test
// failure naming the command.
inline std::filesystem::path generate_once(const std::filesystem::path &out,
                                           const std::filesystem::path &stamp,
                                           const std::vector<std::filesystem::path> &inputs,
                                           const std::string &command) {
    namespace fs = std::filesystem;
    auto fresh = [&] {
        std::error_code ec;
        auto made = fs::last_write_time(stamp, ec);
        if (ec) return false;
        for (const fs::path &in : inputs)
            if (fs::last_write_time(in, ec) > made || ec) return false;
        return true;
    };
    fs::create_directories(out.parent_path());
    std::string lock_path = out.string() + ".lock";
    int lock = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) {
        ADD_FAILURE() << "cannot lock " << lock_path;
        if (lock >= 0) close(lock);
        return {};
    }
    struct unlock {
        int fd;
        ~unlock() { close(fd); } // closing drops the flock
    } guard{lock};
    if (fresh()) return out;
    fs::path tmp = out.string() + ".tmp." + std::to_string(getpid());
    std::error_code ec;
    fs::remove_all(tmp, ec);
    std::string cmd = command + " '" + tmp.string() + "'";
    if (std::system(cmd.c_str()) != 0) {
        ADD_FAILURE() << "generator failed: " << cmd;
        fs::remove_all(tmp, ec);
        return {};
    }
    fs::remove_all(out, ec);
    fs::rename(tmp, out, ec);
    if (ec) {
        ADD_FAILURE() << "cannot rename " << tmp << " to " << out << ": " << ec.message();
        return {};
    }
    return out;
}

} // namespace parley::testing
