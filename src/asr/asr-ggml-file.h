// What the ggml-format ASR engines (Whisper, Parakeet) share before their libraries load a file.
//
// ggml_model_file reads a model file's structure without its data, so that a cut or damaged file
// is refused with a clear reason before the library sees it (libwhisper crashes on a cut header
// and takes a file that ends before the first tensor for an "empty model for testing").
// ensure_ggml_backends() loads ggml's CPU backend plugin once per process. Both are used from
// the thread that loads an engine; a ggml_model_file belongs to one thread.
#pragma once

#include <ggml-backend.h>
#include <ggml.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
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

} // namespace parley
