// What the ggml-format ASR engines (Whisper, Parakeet) share before their libraries load a file.
//
// ggml_model_file reads a model file's structure without its data, so that a cut or damaged file
// is refused with a clear reason before the library sees it (libwhisper crashes on a cut header
// and takes a file that ends before the first tensor for an "empty model for testing").
// ensure_ggml_backends() loads ggml's CPU backend plugin once per process;
// check_ggml_model_file() gives every such check the same reasons; ggml_engine_log() is their
// log callback. Used from the thread that loads an engine; a ggml_model_file belongs to one
// thread.
#pragma once

#include <ggml-backend.h>
#include <ggml.h>

#include "asr/asr.h"
#include "core/log.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <sys/types.h>

namespace parley {

// Debian's ggml loads its CPU backend as a plugin; load it once unless another engine has.
inline void ensure_ggml_backends() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (!ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)) ggml_backend_load_all();
    });
}

// Reads a model file's structure without its data, to refuse a cut or damaged file before the
// library sees it: its loader crashes on a cut header and takes a file that ends before the
// first tensor for an "empty model for testing".
class ggml_model_file {
  public:
    struct cut {}; // the file ends inside a field
    struct bad {   // a field holds an impossible value
        std::string what;
    };

    explicit ggml_model_file(const std::string &path) : f_(fopen(path.c_str(), "rb")) {
        if (!f_) {
            open_error_ = errno;
            return;
        }
        fseeko(f_, 0, SEEK_END);
        size_ = uint64_t(ftello(f_));
        fseeko(f_, 0, SEEK_SET);
    }
    ~ggml_model_file() {
        if (f_) fclose(f_);
    }
    bool is_open() const { return f_ != nullptr; }
    const char *open_error() const { return strerror(open_error_); }
    bool at_end() const { return pos_ == size_; }

    int32_t i32() {
        int32_t v;
        if (pos_ + 4 > size_ || fread(&v, 4, 1, f_) != 1) throw cut{};
        pos_ += 4;
        return v;
    }
    int32_t positive(const char *field) {
        int32_t v = i32();
        if (v <= 0) throw bad{std::string(field) + " = " + std::to_string(v)};
        return v;
    }
    void skip(uint64_t n) {
        if (n > size_ - pos_) throw cut{};
        pos_ += n;
        fseeko(f_, off_t(pos_), SEEK_SET);
    }
    void skip_vocabulary() {
        int32_t n = i32();
        if (n < 0) throw bad{"vocabulary size " + std::to_string(n)};
        for (int32_t i = 0; i < n; ++i) {
            int32_t len = i32();
            if (len < 0) throw bad{"token length " + std::to_string(len)};
            skip(uint64_t(len));
        }
    }
    // Tensor records to the end: n_dims, name length, type, dims, name, data.
    int skip_tensors() {
        int count = 0;
        while (!at_end()) {
            int32_t n_dims = i32(), name_len = i32(), type = i32();
            if (n_dims < 0 || n_dims > 4 || name_len <= 0 || name_len > 1024 || type < 0 ||
                type >= GGML_TYPE_COUNT || ggml_blck_size(ggml_type(type)) == 0)
                throw bad{"tensor header " + std::to_string(count)};
            int64_t elements = 1, row = 1;
            for (int32_t d = 0; d < n_dims; ++d) {
                int32_t ne = positive("tensor dimension");
                if (d == 0) row = ne;
                elements *= ne;
                if (elements > (int64_t(1) << 40)) throw bad{"tensor size"};
            }
            int64_t block = ggml_blck_size(ggml_type(type));
            if (row % block != 0) throw bad{"tensor row size"};
            skip(uint64_t(name_len) + uint64_t(elements / block) * ggml_type_size(ggml_type(type)));
            ++count;
        }
        return count;
    }
    uint64_t size() const { return size_; }

  private:
    FILE *f_;
    int open_error_ = 0;
    uint64_t size_ = 0, pos_ = 0;
};

// The libraries report load errors only through their log: the first error of a load on this
// thread, for the message (the later lines only say that loading failed). Clear it before a load.
inline thread_local std::string ggml_first_error;

// A ggml engine's log line into Parley's log: errors (and warnings, with `warnings`) as
// warnings, the rest as debug.
inline void ggml_engine_log(const char *engine, ggml_log_level level, const char *text,
                            bool warnings) {
    std::string line(text ? text : "");
    while (!line.empty() && (line.back() == '\n' || line.back() == ' '))
        line.pop_back();
    if (line.empty()) return;
    if (level == GGML_LOG_LEVEL_ERROR && ggml_first_error.empty()) ggml_first_error = line;
    if (level == GGML_LOG_LEVEL_ERROR || (warnings && level == GGML_LOG_LEVEL_WARN))
        log_warn("%s: %s", engine, line.c_str());
    else
        log_debug("%s: %s", engine, line.c_str());
}

// Refuses a missing, unreadable, non-ggml, cut or damaged model file with its reason, before the
// engine's library loads it (its loader then checks each tensor's name and shape). `header`
// reads the format's own header fields after the magic; `kind` names the format in messages.
inline void check_ggml_model_file(const std::string &engine, const std::string &path,
                                  const std::string &kind,
                                  const std::function<void(ggml_model_file &)> &header) {
    if (path.empty()) throw asr_error(engine + ": no model file given");
    ggml_model_file file(path);
    if (!file.is_open())
        throw asr_error(engine + ": cannot open model file " + path + ": " + file.open_error());
    try {
        if (uint32_t(file.i32()) != GGML_FILE_MAGIC)
            throw asr_error(engine + ": " + path + " is not a " + kind + " (bad magic)");
        header(file);
        file.skip_vocabulary();
        if (file.skip_tensors() == 0)
            throw asr_error(engine + ": " + path + " is truncated (it holds no tensors)");
    } catch (const ggml_model_file::cut &) {
        throw asr_error(engine + ": " + path + " is truncated (" + std::to_string(file.size()) +
                        " bytes)");
    } catch (const ggml_model_file::bad &e) {
        throw asr_error(engine + ": " + path + " is corrupt (" + e.what + ")");
    }
}

} // namespace parley
