// The JSON form of a turn's timings: the stored history's record (turn_record::timings_json)
// and the native protocol's response_done carry the same object. See docs/protocol.md.
#pragma once

#include "store/turn-timings.h"

#include <string>

namespace parley {

std::string turn_timings_json(const turn_timings &t);

} // namespace parley
