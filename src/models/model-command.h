// `parley models list | show NAME | pull NAME... | path NAME | rm NAME...`: the model manager's
// command line. Called from main() on the main thread; prints to stdout/stderr and returns the
// exit code (0 ok, 1 a download or the disk failed, 2 bad input: unknown model, bad manifest,
// model not pulled).
#pragma once

#include <string>
#include <vector>

namespace parley {

int models_command(const std::vector<std::string> &args);

} // namespace parley
