// What every ONNX Runtime user in Parley (Piper voices, the Silero VAD) shares: one process-wide
// environment, std::cerr muted while a model loads, and one-line error messages.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <iostream>
#include <string>
#include <vector>

namespace parley {

// The process's one Ort::Env (ONNX Runtime allows one logging manager per process).
Ort::Env &ort_env();

// Debian's onnxruntime and its libonnx both register ONNX's operator schemas: on the first
// session, libonnx prints some 600 harmless "Schema error: ... already registered" lines to
// std::cerr. Parley logs with stdio and ONNX Runtime's own log is not std::cerr, so loading a
// model mutes std::cerr. Not thread-safe: hold a lock around it where loads can race.
struct cerr_muted {
    std::streambuf *saved = std::cerr.rdbuf(nullptr);
    ~cerr_muted() { std::cerr.rdbuf(saved); }
    cerr_muted() = default;
    cerr_muted(const cerr_muted &) = delete;
    cerr_muted &operator=(const cerr_muted &) = delete;
};

// An error message on one line (ONNX Runtime's span several).
std::string one_line(std::string s);

// Opens an ONNX model the way Parley runs them all: one call at a time beside the other engines
// on the same cores (one intra-op and one inter-op thread), full graph optimisation, std::cerr
// muted under a process-wide lock while it loads. Throws std::runtime_error with ONNX Runtime's
// reason on one line. Thread-safe.
Ort::Session onnx_open(const std::string &path);

// A model's input and output names.
std::vector<std::string> onnx_input_names(const Ort::Session &s);
std::vector<std::string> onnx_output_names(const Ort::Session &s);

} // namespace parley
