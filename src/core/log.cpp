#include "core/log.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace parley {

namespace {
std::atomic<int> g_level{LOG_LEVEL_INFO};
std::mutex g_mutex;

void vlog(log_level level, const char *tag, const char *fmt, va_list ap) {
    if (level < g_level.load()) return;
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    std::lock_guard lock(g_mutex);
    fprintf(stderr, "parley %s: %s\n", tag, buf);
}
} // namespace

void log_set_level(log_level level) {
    g_level = level;
}

#define PARLEY_LOG_FN(name, level, tag)                                                            \
    void name(const char *fmt, ...) {                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(level, tag, fmt, ap);                                                                 \
        va_end(ap);                                                                                \
    }
PARLEY_LOG_FN(log_debug, LOG_LEVEL_DEBUG, "debug")
PARLEY_LOG_FN(log_info, LOG_LEVEL_INFO, "info")
PARLEY_LOG_FN(log_warn, LOG_LEVEL_WARN, "warn")
PARLEY_LOG_FN(log_error, LOG_LEVEL_ERROR, "error")

} // namespace parley
