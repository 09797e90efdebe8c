#include "core/onnx.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace parley {

Ort::Env &ort_env() {
    static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "parley");
    return env;
}

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::replace(s.begin(), s.end(), '\r', ' ');
    while (!s.empty() && s.back() == ' ')
        s.pop_back();
    return s;
}

Ort::Session onnx_open(const std::string &path) {
    static std::mutex load_mutex; // the std::cerr redirection is process-wide
    std::lock_guard lock(load_mutex);
    cerr_muted quiet;
    try {
        Ort::SessionOptions options;
        options.SetIntraOpNumThreads(1);
        options.SetInterOpNumThreads(1);
        options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
        return Ort::Session(ort_env(), path.c_str(), options);
    } catch (const Ort::Exception &e) {
        throw std::runtime_error(one_line(e.what()));
    }
}

namespace {

std::vector<std::string> names(const Ort::Session &s, bool inputs) {
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<std::string> out;
    size_t n = inputs ? s.GetInputCount() : s.GetOutputCount();
    for (size_t i = 0; i < n; ++i)
        out.push_back(inputs ? s.GetInputNameAllocated(i, alloc).get()
                             : s.GetOutputNameAllocated(i, alloc).get());
    return out;
}

} // namespace

std::vector<std::string> onnx_input_names(const Ort::Session &s) {
    return names(s, true);
}

std::vector<std::string> onnx_output_names(const Ort::Session &s) {
    return names(s, false);
}

} // namespace parley
