// libcurl lives here and nowhere else. A transfer writes straight into DEST.part (opened once,
// locked with flock so two pulls of one file cannot interleave) and hashes as it writes, so a
// finished file is never read twice; a resumed one re-reads only the part it kept.
#include "models/model-download.h"

#include "core/sha256.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <curl/curl.h>
#include <fcntl.h>
#include <mutex>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace parley {

namespace {

using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t) {
    return std::chrono::duration<double>(steady::now() - t).count();
}

std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    long t = long(s + 0.5);
    char buf[32];
    if (t >= 3600)
        snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

std::string lower(std::string s) {
    for (char &c : s)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string trim(std::string_view s) {
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return "";
    size_t e = s.find_last_not_of(" \t\r\n");
    return std::string(s.substr(b, e - b + 1));
}

// An ETag as the hub sends it ("W/\"abc\"") without the weak marker and quotes.
std::string etag_value(std::string v) {
    if (v.rfind("W/", 0) == 0) v = v.substr(2);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return lower(v);
}

int64_t parse_int(const std::string &s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return -1;
    try {
        return std::stoll(s);
    } catch (...) {
        return -1;
    }
}

std::string base_name(const std::string &path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Progress on stderr: a bar redrawn in place on a terminal, otherwise a line per 10 % step
// (at most one per interval, and one every 30 s when there is no total).
class progress_meter {
  public:
    progress_meter(const download_request &req, std::string label)
        : out_(req.progress_out), bar_(req.progress_bar), interval_(req.line_interval_s),
          label_(std::move(label)), t0_(steady::now()), last_(t0_) {}

    void begin(int64_t offset, int64_t total, const std::string &url) {
        start_offset_ = offset;
        total_ = total;
        url_ = url;
        t0_ = last_ = steady::now();
    }

    // Once the response's headers are in, so that the total is known.
    void announce() {
        if (!out_) return;
        if (start_offset_ > 0)
            line("resuming at %s of %s", format_bytes(start_offset_).c_str(), total_text().c_str());
        else
            line("downloading %s from %s", total_text().c_str(), url_.c_str());
    }

    void restart(const char *why) {
        start_offset_ = 0;
        t0_ = steady::now();
        step_ = -1;
        if (out_) line("%s; starting over", why);
    }

    void update(int64_t done) {
        if (!out_) return;
        double since = seconds_since(last_);
        if (bar_) {
            if (since < 0.1) return;
            draw_bar(done);
        } else {
            int step = total_ > 0 ? int(done * 10 / total_) : -1;
            bool new_step = total_ > 0 && step > step_ && done < total_;
            if (!((new_step && since >= interval_) || since >= 30)) return;
            if (new_step) step_ = step;
            line("%s", stats(done).c_str());
        }
        last_ = steady::now();
    }

    // Ends the bar's line so that what follows starts on a fresh one.
    void end() {
        if (out_ && bar_ && drawn_) {
            fputs("\r\033[K", out_);
            fflush(out_);
            drawn_ = false;
        }
    }

    void done(int64_t bytes, bool verified) {
        if (!out_) return;
        end();
        double s = seconds_since(t0_);
        double rate = s > 0 ? double(bytes - start_offset_) / s : 0;
        line("done, %s in %.1f s (%s/s), %s", format_bytes(bytes).c_str(), s,
             format_bytes(int64_t(rate)).c_str(),
             verified ? "sha256 ok" : "no checksum known, not verified");
    }

    void set_total(int64_t total) { total_ = total; }

  private:
    std::string total_text() const { return total_ >= 0 ? format_bytes(total_) : "? bytes"; }

    std::string stats(int64_t done) const {
        double s = seconds_since(t0_);
        double rate = s > 0.05 ? double(done - start_offset_) / s : 0;
        char buf[160];
        if (total_ > 0) {
            double left = rate > 0 ? double(total_ - done) / rate : NAN;
            snprintf(buf, sizeof buf, "%3d%% %s/%s  %s/s  %s left", int(done * 100 / total_),
                     format_bytes(done).c_str(), format_bytes(total_).c_str(),
                     format_bytes(int64_t(rate)).c_str(), format_duration(left).c_str());
        } else {
            snprintf(buf, sizeof buf, "%s  %s/s", format_bytes(done).c_str(),
                     format_bytes(int64_t(rate)).c_str());
        }
        return buf;
    }

    void draw_bar(int64_t done) {
        constexpr int width = 24;
        std::string bar;
        if (total_ > 0) {
            int fill = int(std::min<int64_t>(width, done * width / total_));
            bar = "[" + std::string(fill, '#') + std::string(width - fill, '-') + "] ";
        }
        fprintf(out_, "\r\033[K%s %s%s", label_.c_str(), bar.c_str(), stats(done).c_str());
        fflush(out_);
        drawn_ = true;
    }

    void line(const char *fmt, ...) __attribute__((format(printf, 2, 3))) {
        end();
        va_list ap;
        va_start(ap, fmt);
        fprintf(out_, "parley: models: %s: ", label_.c_str());
        vfprintf(out_, fmt, ap);
        fputc('\n', out_);
        fflush(out_);
        va_end(ap);
    }

    FILE *out_;
    bool bar_;
    double interval_;
    std::string label_;
    std::string url_;
    int64_t start_offset_ = 0;
    int64_t total_ = -1;
    int step_ = -1;
    bool drawn_ = false;
    steady::time_point t0_, last_;
};

// What one curl_easy_perform saw and wrote.
struct transfer {
    int fd = -1;
    int64_t offset = 0;  // bytes of .part kept when the request was sent
    int64_t written = 0; // bytes written by this request
    sha256 *hasher = nullptr;
    progress_meter *meter = nullptr;
    int64_t expected_size = -1; // from the request; header values fill it in when unknown

    // Headers. linked_* come from whichever response carried them (the hub's redirect);
    // the others from the last response.
    long status = 0;
    std::string linked_etag, etag;
    int64_t linked_size = -1, content_length = -1;
    int64_t range_start = -1, range_total = -1;

    bool body_started = false;
    bool restarted = false; // the server ignored Range: the .part was emptied
    bool bad_range = false; // a 206 that does not continue where .part ends
    bool too_big = false;   // more bytes than the expected size
    int write_errno = 0;
};

void reset_hasher(transfer *t) {
    *t->hasher = sha256();
}

size_t on_header(char *data, size_t size, size_t n, void *user) {
    auto *t = static_cast<transfer *>(user);
    std::string_view line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) {
        // A new response (after a redirect, or a 100 Continue): forget the last one's headers.
        size_t sp = line.find(' ');
        t->status =
            sp == std::string_view::npos ? 0 : std::atol(std::string(line.substr(sp + 1)).c_str());
        t->etag.clear();
        t->content_length = t->range_start = t->range_total = -1;
        return size * n;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string name = lower(trim(line.substr(0, colon)));
    std::string value = trim(line.substr(colon + 1));
    if (name == "x-linked-etag") {
        if (t->linked_etag.empty()) t->linked_etag = etag_value(value);
    } else if (name == "etag") {
        t->etag = etag_value(value);
    } else if (name == "x-linked-size") {
        if (t->linked_size < 0) t->linked_size = parse_int(value);
    } else if (name == "content-length") {
        t->content_length = parse_int(value);
    } else if (name == "content-range") {
        // "bytes START-END/TOTAL" or "bytes */TOTAL"
        std::string v = value;
        if (v.rfind("bytes ", 0) == 0) v = v.substr(6);
        size_t slash = v.find('/');
        if (slash != std::string::npos) {
            t->range_total = parse_int(v.substr(slash + 1));
            size_t dash = v.find('-');
            if (dash != std::string::npos && dash < slash)
                t->range_start = parse_int(v.substr(0, dash));
        }
    }
    return size * n;
}

// The size the finished file must have: the request's, else the hub's, else the response's.
int64_t total_from_headers(const transfer &t) {
    if (t.expected_size >= 0) return t.expected_size;
    if (t.linked_size >= 0) return t.linked_size;
    if (t.status == 206 && t.range_total >= 0) return t.range_total;
    if (t.status == 200 && t.content_length >= 0) return t.content_length;
    return -1;
}

bool write_all(int fd, const char *p, size_t n, int *err) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            *err = errno;
            return false;
        }
        p += w;
        n -= size_t(w);
    }
    return true;
}

size_t on_body(char *data, size_t size, size_t n, void *user) {
    auto *t = static_cast<transfer *>(user);
    size_t bytes = size * n;
    if (!t->body_started) {
        t->body_started = true;
        if (t->offset > 0 && t->status == 200) {
            // The server sent the whole file instead of the rest: drop what we had.
            if (ftruncate(t->fd, 0) != 0 || lseek(t->fd, 0, SEEK_SET) != 0) {
                t->write_errno = errno;
                return 0;
            }
            t->offset = 0;
            t->restarted = true;
            reset_hasher(t);
            t->meter->restart("the server ignored the range request");
        } else if (t->offset > 0 && t->status == 206 && t->range_start != t->offset) {
            t->bad_range = true;
            return 0;
        }
        t->meter->set_total(total_from_headers(*t));
        t->meter->announce();
    }
    int64_t total = total_from_headers(*t);
    if (total >= 0 && t->offset + t->written + int64_t(bytes) > total) {
        t->too_big = true;
        return 0;
    }
    if (!write_all(t->fd, data, bytes, &t->write_errno)) return 0;
    t->hasher->update(data, bytes);
    t->written += int64_t(bytes);
    t->meter->update(t->offset + t->written);
    return bytes;
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Hashes the first `bytes` of fd into h. Returns 0 or an errno.
int hash_prefix(int fd, int64_t bytes, sha256 *h) {
    std::vector<char> buf(1 << 20);
    int64_t pos = 0;
    while (pos < bytes) {
        ssize_t r =
            pread(fd, buf.data(), size_t(std::min<int64_t>(int64_t(buf.size()), bytes - pos)), pos);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return EIO;
        h->update(buf.data(), size_t(r));
        pos += r;
    }
    return 0;
}

download_result fail(download_status status, std::string error) {
    download_result r;
    r.status = status;
    r.error = std::move(error);
    return r;
}

} // namespace

std::string format_bytes(int64_t bytes) {
    char buf[32];
    if (bytes < 1024) {
        snprintf(buf, sizeof buf, "%lld B", (long long)bytes);
    } else {
        const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
        double v = double(bytes);
        int u = -1;
        while (v >= 1024 && u < 3) {
            v /= 1024;
            u++;
        }
        snprintf(buf, sizeof buf,
                 v < 10    ? "%.2f %s"
                 : v < 100 ? "%.1f %s"
                           : "%.0f %s",
                 v, units[u]);
    }
    return buf;
}

download_result download_file(const download_request &req) {
    global_init();
    const std::string label = req.label.empty() ? base_name(req.dest) : req.label;
    const std::string part = req.dest + ".part";

    int fd = open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return fail(DOWNLOAD_IO, label + ": cannot write " + part + ": " + strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return fail(DOWNLOAD_BUSY, label + ": another parley is downloading " + part);
    }
    // Removes an empty .part (nothing worth resuming); the lock dies with the descriptor.
    auto finish = [&](download_result r) {
        struct stat st;
        if (r.status != DOWNLOAD_OK && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_size == 0)
            unlink(part.c_str());
        close(fd);
        return r;
    };

    struct stat st;
    if (fstat(fd, &st) != 0) return finish(fail(DOWNLOAD_IO, label + ": " + strerror(errno)));
    int64_t offset = S_ISREG(st.st_mode) ? int64_t(st.st_size) : 0;
    if (req.size >= 0 && offset > req.size) {
        // Longer than the file can be: not a prefix of it.
        if (ftruncate(fd, 0) != 0) return finish(fail(DOWNLOAD_IO, label + ": " + strerror(errno)));
        offset = 0;
    }
    sha256 hasher;
    if (offset > 0) {
        if (int err = hash_prefix(fd, offset, &hasher); err != 0)
            return finish(
                fail(DOWNLOAD_IO, label + ": cannot read " + part + ": " + strerror(err)));
    }
    if (lseek(fd, offset, SEEK_SET) < 0)
        return finish(fail(DOWNLOAD_IO, label + ": " + strerror(errno)));

    progress_meter meter(req, label);
    transfer t;
    download_result result;

    // A complete .part left by an interrupted rename needs no request when its sum is known.
    bool complete = req.size >= 0 && offset == req.size && !req.sha256.empty();
    if (!complete) {
        CURL *curl = curl_easy_init();
        if (!curl) return finish(fail(DOWNLOAD_IO, label + ": curl_easy_init failed"));
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_slist *headers = nullptr;
        if (!req.bearer_token.empty())
            headers =
                curl_slist_append(headers, ("Authorization: Bearer " + req.bearer_token).c_str());
        t.fd = fd;
        t.offset = offset;
        t.hasher = &hasher;
        t.meter = &meter;
        t.expected_size = req.size;
        std::string range = std::to_string(offset) + "-";
        curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "parley/0.1");
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, req.connect_timeout_s);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, req.stall_timeout_s);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
        if (headers) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        if (offset > 0) curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
        meter.begin(offset, req.size, req.url);
        CURLcode rc = curl_easy_perform(curl);
        meter.end();
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);
        result.http_status = status;
        result.resumed_from = t.restarted ? 0 : offset;
        std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
        int64_t have = t.offset + t.written;
        int64_t total = total_from_headers(t);

        if (rc == CURLE_HTTP_RETURNED_ERROR) {
            if (status == 404)
                return finish(
                    fail(DOWNLOAD_NOT_FOUND, label + ": not found (HTTP 404) at " + req.url));
            if (status == 401 || status == 403) {
                std::string why = req.bearer_token.empty()
                                      ? "needs a Hugging Face token: set HF_TOKEN (and accept the "
                                        "model's licence on its page)"
                                      : "the token in HF_TOKEN was refused (does it have access? "
                                        "accept the model's licence on its page)";
                return finish(fail(DOWNLOAD_AUTH, label + ": access denied (HTTP " +
                                                      std::to_string(status) + "): " + why));
            }
            if (status == 416 && offset > 0) {
                // Nothing after our offset: the .part is whole if the server's total says so.
                if (t.range_total == offset || (t.range_total < 0 && total == offset)) {
                    complete = true;
                } else {
                    if (ftruncate(fd, 0) != 0)
                        return finish(fail(DOWNLOAD_IO, label + ": " + strerror(errno)));
                    return finish(fail(DOWNLOAD_INTERRUPTED,
                                       label + ": the server refused to resume (HTTP 416); the "
                                               "partial file was dropped, run the command again"));
                }
            } else {
                return finish(fail(DOWNLOAD_HTTP, label + ": HTTP " + std::to_string(status) +
                                                      " from " + req.url));
            }
        } else if (rc == CURLE_WRITE_ERROR && t.write_errno != 0) {
            if (t.write_errno == ENOSPC || t.write_errno == EDQUOT)
                return finish(fail(DOWNLOAD_DISK_FULL,
                                   label + ": disk full after " + format_bytes(have) + " of " +
                                       (total >= 0 ? format_bytes(total) : std::string("?")) +
                                       " (" + strerror(t.write_errno) + ") writing " + part +
                                       "; free some space and run the command again to resume"));
            return finish(fail(DOWNLOAD_IO,
                               label + ": cannot write " + part + ": " + strerror(t.write_errno)));
        } else if (rc == CURLE_WRITE_ERROR && t.bad_range) {
            if (ftruncate(fd, 0) != 0)
                return finish(fail(DOWNLOAD_IO, label + ": " + strerror(errno)));
            return finish(fail(DOWNLOAD_INTERRUPTED,
                               label + ": the server resumed at the wrong offset; the partial file "
                                       "was dropped, run the command again"));
        } else if (rc == CURLE_WRITE_ERROR && t.too_big) {
            unlink(part.c_str());
            return finish(
                fail(DOWNLOAD_CHECKSUM, label + ": the server sent more than the expected " +
                                            format_bytes(total) + "; the download was deleted"));
        } else if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
                   rc == CURLE_COULDNT_CONNECT ||
                   (rc == CURLE_OPERATION_TIMEDOUT && !t.body_started && t.status == 0)) {
            return finish(
                fail(DOWNLOAD_OFFLINE, label + ": cannot reach the server (offline?): " + detail));
        } else if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
                   rc == CURLE_GOT_NOTHING || rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_HTTP2 ||
                   rc == CURLE_HTTP2_STREAM) {
            return finish(fail(DOWNLOAD_INTERRUPTED,
                               label + ": connection lost after " + format_bytes(have) + " of " +
                                   (total >= 0 ? format_bytes(total) : std::string("?")) + " (" +
                                   detail + "); run the command again to resume"));
        } else if (rc != CURLE_OK) {
            return finish(fail(DOWNLOAD_HTTP, label + ": " + detail));
        }
        if (!complete && total >= 0 && have < total)
            return finish(fail(DOWNLOAD_INTERRUPTED, label + ": the server ended the file after " +
                                                         format_bytes(have) + " of " +
                                                         format_bytes(total) +
                                                         "; run the command again to resume"));
    }

    // Verify: the size, then the checksum (the request's, else the hub's).
    int64_t bytes = complete ? offset : t.offset + t.written;
    int64_t want_size = req.size >= 0 ? req.size : total_from_headers(t);
    std::string want = req.sha256;
    if (want.empty() && is_sha256_hex(t.linked_etag)) want = t.linked_etag;
    if (want.empty() && is_sha256_hex(t.etag)) want = t.etag;
    std::string got = hasher.hex();
    if (want_size >= 0 && bytes != want_size) {
        unlink(part.c_str());
        return finish(fail(DOWNLOAD_CHECKSUM, label + ": size mismatch: expected " +
                                                  std::to_string(want_size) + " bytes, got " +
                                                  std::to_string(bytes) +
                                                  "; the download was deleted"));
    }
    if (!want.empty() && got != want) {
        unlink(part.c_str());
        return finish(fail(DOWNLOAD_CHECKSUM, label + ": checksum mismatch: expected sha256 " +
                                                  want + ", got " + got +
                                                  "; the download was deleted"));
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        int err = errno;
        return finish(fail(err == ENOSPC ? DOWNLOAD_DISK_FULL : DOWNLOAD_IO,
                           label + ": cannot write " + part + ": " + strerror(err)));
    }
    if (rename(part.c_str(), req.dest.c_str()) != 0)
        return finish(fail(DOWNLOAD_IO, label + ": cannot rename " + part + " to " + req.dest +
                                            ": " + strerror(errno)));
    result.status = DOWNLOAD_OK;
    result.sha256 = got;
    result.bytes = bytes;
    result.verified = !want.empty();
    meter.done(bytes, result.verified);
    close(fd);
    return result;
}

} // namespace parley
