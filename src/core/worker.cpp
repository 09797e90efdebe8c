#include "core/worker.h"

#include "core/log.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <linux/sched.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace parley {

void set_thread_name(const std::string &name) {
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

namespace {

// The kernel's struct sched_attr (glibc has no wrapper for sched_setattr/sched_getattr).
struct sched_attr_v1 {
    uint32_t size = sizeof(sched_attr_v1), policy = 0;
    uint64_t flags = 0;
    int32_t nice = 0;
    uint32_t priority = 0;
    uint64_t runtime = 0, deadline = 0, period = 0;
    uint32_t util_min = 0, util_max = 0;
};

} // namespace

std::string set_thread_slice(int us) {
    if (us <= 0) return {};
    sched_attr_v1 attr;
    attr.policy = SCHED_NORMAL;
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0); // per thread on Linux; sched_setattr sets it too
    attr.nice = errno ? 0 : nice;
    attr.runtime = uint64_t(us) * 1000;
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) return std::strerror(errno);
    return {};
}

std::string set_thread_realtime(int priority) {
    if (priority <= 0) return {};
    sched_attr_v1 attr;
    attr.policy = SCHED_FIFO;
    attr.priority = uint32_t(priority);
    attr.flags = SCHED_FLAG_RESET_ON_FORK; // threads it starts get the normal policy
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) return std::strerror(errno);
    return {};
}

int thread_realtime_priority() {
    sched_attr_v1 attr;
    if (syscall(SYS_sched_getattr, 0, &attr, unsigned(sizeof attr), 0u) != 0) return 0;
    return attr.policy == SCHED_FIFO || attr.policy == SCHED_RR ? int(attr.priority) : 0;
}

realtime_grant request_thread_realtime(int option) {
    realtime_grant g;
    g.tried = option < 0 ? REALTIME_PRIORITY_AUTO : option;
    g.error = set_thread_realtime(g.tried);
    if (g.error.empty()) g.priority = g.tried;
    return g;
}

int thread_slice_us() {
    sched_attr_v1 attr;
    if (syscall(SYS_sched_getattr, 0, &attr, unsigned(sizeof attr), 0u) != 0) return 0;
    return int(attr.runtime / 1000);
}

} // namespace parley
