#include "core/onnx.h"

#include <algorithm>

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

} // namespace parley
