// Speech recognition by an audio-LLM (an llm_engine loaded with an audio projector).
//
// The engine holds one KV slot of the language model for its transcriptions, so the fixed
// instruction stays cached; utterances of all sessions queue on it. A stream buffers the audio;
// partial() stays empty (a re-decode per partial would cost a whole encoder pass on the shared
// model thread); finish() submits an LLM_AUDIO_TRANSCRIBE request and waits for its text. The
// llm_engine must outlive the asr_engine.
#pragma once

#include "asr/asr.h"
#include "llm/llm.h"

namespace parley {

// Throws asr_error when the llm_engine takes no audio.
std::unique_ptr<asr_engine> make_audio_llm_asr(llm_engine &llm);

// The timings of the stream's last finish() (for tests and the turn's metrics).
const llm_result &asr_audio_llm_last_result(const asr_stream &stream);

} // namespace parley
