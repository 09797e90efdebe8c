// llama.cpp's RPC backend (ggml's, from libggml0-backend-rpc): a model's layers on other
// machines. `parley rpc-worker` serves this machine's CPU to them; `--rpc HOST:PORT,...` in
// `serve` puts the layers on such workers.
#pragma once

#include <ggml-backend.h>

#include <string>
#include <vector>

namespace parley {

// The workers' devices, for llama_model_params::devices (null-terminated). Each endpoint is
// reached first (a worker that is down is an llm_error naming it, not the library's abort).
std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> &endpoints);

// `parley rpc-worker [--host H] [--port P] [--threads N] [--cache-dir DIR]`: serves the CPU
// until killed. Returns the exit code.
int rpc_worker_main(const std::vector<std::string> &args);

} // namespace parley
