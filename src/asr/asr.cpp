#include "asr/asr.h"

namespace parley {

std::unique_ptr<asr_engine> make_asr_pocketsphinx(const asr_config &config);

std::unique_ptr<asr_engine> make_asr_engine(const asr_config &config) {
    if (config.engine == "pocketsphinx") return make_asr_pocketsphinx(config);
    throw asr_error("unknown ASR engine '" + config.engine + "' (available: pocketsphinx)");
}

} // namespace parley
