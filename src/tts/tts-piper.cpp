// Piper voices: VITS models exported to ONNX (VOICE.onnx, with its config VOICE.onnx.json beside
// it), run with ONNX Runtime. Text becomes phonemes the way Piper does it (piper-phonemize):
// espeak-ng's IPA for the voice's espeak voice, clause by clause, with the clause's punctuation
// kept as a phoneme, "(lang)" switch flags dropped, codepoints in NFD, then
// "^" "_" (phoneme "_")* "$" through the voice's phoneme_id_map; one model run per sentence, 0.2 s
// of silence between sentences, each sentence scaled to full range (as Piper does).
//
// tts_params: rate_wpm maps to length_scale (the voice's own at 175 wpm); voice picks a speaker
// of a multi-speaker voice by name (speaker_id_map) or number, and the default voice names (empty,
// "en-us", the voice's espeak voice) pick speaker 0. A single-speaker voice speaks in its own
// language whatever the voice name.
//
// Thread-safety: the voice loads once (under a mutex); after that the ONNX session and the
// config are read-only and ONNX Runtime's Run() is thread-safe, so concurrent calls only
// serialize on espeak-ng (espeak_mutex(), shared with the espeak engine).
#include "tts/tts.h"

#include "core/log.h"
#include "core/onnx.h"
#include "tts/espeak-lock.h"

#include <espeak-ng/speak_lib.h>
#include <nlohmann/json.hpp>
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sys/stat.h>
#include <unordered_map>

namespace parley {

namespace {

using json = nlohmann::json;

// espeak-ng's clause terminators (its translate.h; not in the public headers), as Piper uses them.
constexpr int CLAUSE_INTONATION_FULL_STOP = 0x00000000;
constexpr int CLAUSE_INTONATION_COMMA = 0x00001000;
constexpr int CLAUSE_INTONATION_QUESTION = 0x00002000;
constexpr int CLAUSE_INTONATION_EXCLAMATION = 0x00003000;
constexpr int CLAUSE_TYPE_CLAUSE = 0x00040000;
constexpr int CLAUSE_TYPE_SENTENCE = 0x00080000;
constexpr int CLAUSE_PERIOD = 40 | CLAUSE_INTONATION_FULL_STOP | CLAUSE_TYPE_SENTENCE;
constexpr int CLAUSE_COMMA = 20 | CLAUSE_INTONATION_COMMA | CLAUSE_TYPE_CLAUSE;
constexpr int CLAUSE_QUESTION = 40 | CLAUSE_INTONATION_QUESTION | CLAUSE_TYPE_SENTENCE;
constexpr int CLAUSE_EXCLAMATION = 45 | CLAUSE_INTONATION_EXCLAMATION | CLAUSE_TYPE_SENTENCE;
constexpr int CLAUSE_COLON = 30 | CLAUSE_INTONATION_FULL_STOP | CLAUSE_TYPE_CLAUSE;
constexpr int CLAUSE_SEMICOLON = 30 | CLAUSE_INTONATION_COMMA | CLAUSE_TYPE_CLAUSE;

constexpr float SENTENCE_SILENCE_S = 0.2f; // Piper's default pause between sentences
constexpr int BASE_RATE_WPM = 175;         // the rate at which the voice's length_scale applies

// Canonical decompositions of the precomposed Latin letters U+00C0..U+017F (all are one ASCII
// letter and one combining mark). Piper's phoneme ids were trained on NFD text: espeak-ng writes
// e.g. German "ç" precomposed, and the model knows it only as "c" + U+0327.
constexpr char32_t nfd_table[][3] = {
    {0x00C0, 0x41, 0x0300}, {0x00C1, 0x41, 0x0301}, {0x00C2, 0x41, 0x0302}, {0x00C3, 0x41, 0x0303},
    {0x00C4, 0x41, 0x0308}, {0x00C5, 0x41, 0x030A}, {0x00C7, 0x43, 0x0327}, {0x00C8, 0x45, 0x0300},
    {0x00C9, 0x45, 0x0301}, {0x00CA, 0x45, 0x0302}, {0x00CB, 0x45, 0x0308}, {0x00CC, 0x49, 0x0300},
    {0x00CD, 0x49, 0x0301}, {0x00CE, 0x49, 0x0302}, {0x00CF, 0x49, 0x0308}, {0x00D1, 0x4E, 0x0303},
    {0x00D2, 0x4F, 0x0300}, {0x00D3, 0x4F, 0x0301}, {0x00D4, 0x4F, 0x0302}, {0x00D5, 0x4F, 0x0303},
    {0x00D6, 0x4F, 0x0308}, {0x00D9, 0x55, 0x0300}, {0x00DA, 0x55, 0x0301}, {0x00DB, 0x55, 0x0302},
    {0x00DC, 0x55, 0x0308}, {0x00DD, 0x59, 0x0301}, {0x00E0, 0x61, 0x0300}, {0x00E1, 0x61, 0x0301},
    {0x00E2, 0x61, 0x0302}, {0x00E3, 0x61, 0x0303}, {0x00E4, 0x61, 0x0308}, {0x00E5, 0x61, 0x030A},
    {0x00E7, 0x63, 0x0327}, {0x00E8, 0x65, 0x0300}, {0x00E9, 0x65, 0x0301}, {0x00EA, 0x65, 0x0302},
    {0x00EB, 0x65, 0x0308}, {0x00EC, 0x69, 0x0300}, {0x00ED, 0x69, 0x0301}, {0x00EE, 0x69, 0x0302},
    {0x00EF, 0x69, 0x0308}, {0x00F1, 0x6E, 0x0303}, {0x00F2, 0x6F, 0x0300}, {0x00F3, 0x6F, 0x0301},
    {0x00F4, 0x6F, 0x0302}, {0x00F5, 0x6F, 0x0303}, {0x00F6, 0x6F, 0x0308}, {0x00F9, 0x75, 0x0300},
    {0x00FA, 0x75, 0x0301}, {0x00FB, 0x75, 0x0302}, {0x00FC, 0x75, 0x0308}, {0x00FD, 0x79, 0x0301},
    {0x00FF, 0x79, 0x0308}, {0x0100, 0x41, 0x0304}, {0x0101, 0x61, 0x0304}, {0x0102, 0x41, 0x0306},
    {0x0103, 0x61, 0x0306}, {0x0104, 0x41, 0x0328}, {0x0105, 0x61, 0x0328}, {0x0106, 0x43, 0x0301},
    {0x0107, 0x63, 0x0301}, {0x0108, 0x43, 0x0302}, {0x0109, 0x63, 0x0302}, {0x010A, 0x43, 0x0307},
    {0x010B, 0x63, 0x0307}, {0x010C, 0x43, 0x030C}, {0x010D, 0x63, 0x030C}, {0x010E, 0x44, 0x030C},
    {0x010F, 0x64, 0x030C}, {0x0112, 0x45, 0x0304}, {0x0113, 0x65, 0x0304}, {0x0114, 0x45, 0x0306},
    {0x0115, 0x65, 0x0306}, {0x0116, 0x45, 0x0307}, {0x0117, 0x65, 0x0307}, {0x0118, 0x45, 0x0328},
    {0x0119, 0x65, 0x0328}, {0x011A, 0x45, 0x030C}, {0x011B, 0x65, 0x030C}, {0x011C, 0x47, 0x0302},
    {0x011D, 0x67, 0x0302}, {0x011E, 0x47, 0x0306}, {0x011F, 0x67, 0x0306}, {0x0120, 0x47, 0x0307},
    {0x0121, 0x67, 0x0307}, {0x0122, 0x47, 0x0327}, {0x0123, 0x67, 0x0327}, {0x0124, 0x48, 0x0302},
    {0x0125, 0x68, 0x0302}, {0x0128, 0x49, 0x0303}, {0x0129, 0x69, 0x0303}, {0x012A, 0x49, 0x0304},
    {0x012B, 0x69, 0x0304}, {0x012C, 0x49, 0x0306}, {0x012D, 0x69, 0x0306}, {0x012E, 0x49, 0x0328},
    {0x012F, 0x69, 0x0328}, {0x0130, 0x49, 0x0307}, {0x0134, 0x4A, 0x0302}, {0x0135, 0x6A, 0x0302},
    {0x0136, 0x4B, 0x0327}, {0x0137, 0x6B, 0x0327}, {0x0139, 0x4C, 0x0301}, {0x013A, 0x6C, 0x0301},
    {0x013B, 0x4C, 0x0327}, {0x013C, 0x6C, 0x0327}, {0x013D, 0x4C, 0x030C}, {0x013E, 0x6C, 0x030C},
    {0x0143, 0x4E, 0x0301}, {0x0144, 0x6E, 0x0301}, {0x0145, 0x4E, 0x0327}, {0x0146, 0x6E, 0x0327},
    {0x0147, 0x4E, 0x030C}, {0x0148, 0x6E, 0x030C}, {0x014C, 0x4F, 0x0304}, {0x014D, 0x6F, 0x0304},
    {0x014E, 0x4F, 0x0306}, {0x014F, 0x6F, 0x0306}, {0x0150, 0x4F, 0x030B}, {0x0151, 0x6F, 0x030B},
    {0x0154, 0x52, 0x0301}, {0x0155, 0x72, 0x0301}, {0x0156, 0x52, 0x0327}, {0x0157, 0x72, 0x0327},
    {0x0158, 0x52, 0x030C}, {0x0159, 0x72, 0x030C}, {0x015A, 0x53, 0x0301}, {0x015B, 0x73, 0x0301},
    {0x015C, 0x53, 0x0302}, {0x015D, 0x73, 0x0302}, {0x015E, 0x53, 0x0327}, {0x015F, 0x73, 0x0327},
    {0x0160, 0x53, 0x030C}, {0x0161, 0x73, 0x030C}, {0x0162, 0x54, 0x0327}, {0x0163, 0x74, 0x0327},
    {0x0164, 0x54, 0x030C}, {0x0165, 0x74, 0x030C}, {0x0168, 0x55, 0x0303}, {0x0169, 0x75, 0x0303},
    {0x016A, 0x55, 0x0304}, {0x016B, 0x75, 0x0304}, {0x016C, 0x55, 0x0306}, {0x016D, 0x75, 0x0306},
    {0x016E, 0x55, 0x030A}, {0x016F, 0x75, 0x030A}, {0x0170, 0x55, 0x030B}, {0x0171, 0x75, 0x030B},
    {0x0172, 0x55, 0x0328}, {0x0173, 0x75, 0x0328}, {0x0174, 0x57, 0x0302}, {0x0175, 0x77, 0x0302},
    {0x0176, 0x59, 0x0302}, {0x0177, 0x79, 0x0302}, {0x0178, 0x59, 0x0308}, {0x0179, 0x5A, 0x0301},
    {0x017A, 0x7A, 0x0301}, {0x017B, 0x5A, 0x0307}, {0x017C, 0x7A, 0x0307}, {0x017D, 0x5A, 0x030C},
    {0x017E, 0x7A, 0x030C},
};

void append_nfd(std::u32string &out, char32_t c) {
    if (c >= 0xC0 && c <= 0x17F) {
        auto it = std::lower_bound(std::begin(nfd_table), std::end(nfd_table), c,
                                   [](const char32_t(&row)[3], char32_t v) { return row[0] < v; });
        if (it != std::end(nfd_table) && (*it)[0] == c) {
            out += (*it)[1];
            out += (*it)[2];
            return;
        }
    }
    out += c;
}

// UTF-8 to codepoints; a malformed byte becomes U+FFFD.
std::u32string decode_utf8(std::string_view s) {
    std::u32string out;
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + size_t(len) > s.size()) {
            out += U'\uFFFD';
            ++i;
            continue;
        }
        char32_t cp = len == 1 ? c : c & (0x7F >> len);
        bool ok = true;
        for (int k = 1; k < len; ++k) {
            unsigned char cc = static_cast<unsigned char>(s[i + size_t(k)]);
            if ((cc & 0xC0) != 0x80) ok = false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (!ok) {
            out += U'\uFFFD';
            ++i;
            continue;
        }
        out += cp;
        i += size_t(len);
    }
    return out;
}

std::string encode_utf8(char32_t c) {
    std::string s;
    if (c < 0x80) {
        s += char(c);
    } else if (c < 0x800) {
        s += char(0xC0 | (c >> 6));
        s += char(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        s += char(0xE0 | (c >> 12));
        s += char(0x80 | ((c >> 6) & 0x3F));
        s += char(0x80 | (c & 0x3F));
    } else {
        s += char(0xF0 | (c >> 18));
        s += char(0x80 | ((c >> 12) & 0x3F));
        s += char(0x80 | ((c >> 6) & 0x3F));
        s += char(0x80 | (c & 0x3F));
    }
    return s;
}

bool file_exists(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The words of a piece of text, for timings: whitespace-separated, edge punctuation removed,
// only pieces with a letter or digit (any non-ASCII byte counts as one).
std::vector<std::string> text_words(std::string_view text) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
            ++i;
        size_t j = i;
        while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j])))
            ++j;
        std::string_view w = text.substr(i, j - i);
        auto is_punct = [](char c) { return std::ispunct(static_cast<unsigned char>(c)) != 0; };
        while (!w.empty() && is_punct(w.front()))
            w.remove_prefix(1);
        while (!w.empty() && is_punct(w.back()))
            w.remove_suffix(1);
        bool speakable = false;
        for (unsigned char c : w)
            if (std::isalnum(c) || c >= 0x80) speakable = true;
        if (speakable) out.emplace_back(w);
        i = j;
    }
    return out;
}

struct voice_config {
    int sample_rate = 22050;
    std::string espeak_voice;
    std::string phoneme_type = "espeak"; // espeak or text
    float noise_scale = 0.667f;
    float length_scale = 1.0f;
    float noise_w = 0.8f;
    int num_speakers = 1;
    std::map<std::string, int64_t> speakers;
    std::unordered_map<char32_t, std::vector<int64_t>> ids;
    std::unordered_map<char32_t, std::u32string> phoneme_map; // optional phoneme -> phonemes
};

// A clause as espeak-ng cut it: its phonemes and the text it read them from.
struct clause {
    std::u32string phonemes;
    std::string text;
};

struct sentence {
    std::vector<clause> clauses;
};

class tts_piper : public tts_engine {
  public:
    explicit tts_piper(tts_config config) : config_(std::move(config)) {}

    std::string name() const override { return "piper"; }

    std::string check(const tts_params &params) override {
        if (!load()) return load_error_;
        int64_t sid = 0;
        float length_scale = 0;
        return resolve(params, sid, length_scale);
    }

    bool knows_voice(const std::string &voice) override {
        if (!load()) return true;
        tts_params p;
        p.voice = voice;
        int64_t sid = 0;
        float length_scale = 0;
        return resolve(p, sid, length_scale).empty();
    }

    // 22050 (Piper's usual rate) when the voice cannot load; check() says why.
    int sample_rate() override { return load() ? voice_.sample_rate : 22050; }

    tts_result synthesize(std::string_view text, const tts_params &params) override {
        if (!load()) throw tts_error(load_error_);
        int64_t sid = 0;
        float length_scale = 0;
        if (std::string err = resolve(params, sid, length_scale); !err.empty())
            throw tts_error(err);

        std::vector<sentence> sentences =
            voice_.phoneme_type == "text" ? phonemize_text(text) : phonemize_espeak(text);
        tts_result out;
        out.sample_rate = voice_.sample_rate;
        const size_t silence = size_t(SENTENCE_SILENCE_S * float(voice_.sample_rate));
        for (const sentence &s : sentences) {
            std::vector<int64_t> ids = phoneme_ids(s);
            if (ids.size() <= 3) continue; // "^", "_", "$": nothing to say
            if (!out.pcm.empty()) out.pcm.insert(out.pcm.end(), silence, 0);
            size_t begin = out.pcm.size();
            run(ids, sid, length_scale, out.pcm);
            add_word_estimates(s, begin, out.pcm.size(), out.words);
            out.words_estimated = true;
        }
        return out;
    }

  private:
    // Loads once; afterwards voice_ and session_ never change. False with load_error_ set when
    // the voice cannot be used.
    bool load() {
        std::lock_guard lock(load_m_);
        if (loaded_) return load_error_.empty();
        loaded_ = true;
        auto t0 = std::chrono::steady_clock::now();
        load_error_ = load_locked();
        if (!load_error_.empty()) {
            log_error("%s", load_error_.c_str());
            return false;
        }
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count();
        log_info("piper: loaded %s (%d Hz, %d speaker%s) in %.0f ms", config_.model_path.c_str(),
                 voice_.sample_rate, voice_.num_speakers, voice_.num_speakers == 1 ? "" : "s", ms);
        return true;
    }

    std::string load_locked() {
        const std::string &model = config_.model_path;
        if (model.empty()) return "piper: no voice given (--tts-model VOICE.onnx)";
        if (!file_exists(model)) return "piper: voice model not found: " + model;
        const std::string config_path = model + ".json";
        if (!file_exists(config_path))
            return "piper: voice config not found: " + config_path + " (expected beside the model)";
        if (std::string err = read_config(config_path); !err.empty()) return err;

        if (voice_.phoneme_type == "espeak") {
            std::lock_guard lock(espeak_mutex());
            if (espeak_initialize_once() <= 0)
                return "piper: cannot initialise espeak-ng (is espeak-ng-data installed?)";
            if (!espeak_select_voice(voice_.espeak_voice))
                return "piper: espeak-ng has no voice '" + voice_.espeak_voice +
                       "' (espeak.voice in " + config_path + ")";
        }

        try {
            session_.emplace(onnx_open(model)); // one phrase at a time on the shared TTS worker
        } catch (const std::exception &e) {
            return "piper: cannot load voice model " + model + ": " + e.what();
        }
        bool has_input = false, has_lengths = false, has_scales = false;
        for (const std::string &n : onnx_input_names(*session_)) {
            has_input |= n == "input";
            has_lengths |= n == "input_lengths";
            has_scales |= n == "scales";
            has_sid_ |= n == "sid";
        }
        if (!has_input || !has_lengths || !has_scales)
            return "piper: " + model +
                   " is not a Piper voice (needs inputs input, input_lengths, scales)";
        std::vector<std::string> outputs = onnx_output_names(*session_);
        if (outputs.empty()) return "piper: " + model + " has no output";
        output_name_ = outputs[0];
        if (voice_.num_speakers > 1 && !has_sid_)
            return "piper: " + config_path + " has " + std::to_string(voice_.num_speakers) +
                   " speakers but " + model + " has no sid input";
        return {};
    }

    std::string read_config(const std::string &path) {
        std::ifstream f(path, std::ios::binary);
        if (!f) return "piper: cannot read voice config " + path;
        try {
            json j = json::parse(f);
            if (!j.is_object()) return "piper: malformed voice config " + path + ": not an object";
            if (!j.contains("audio") || !j["audio"].contains("sample_rate"))
                return "piper: voice config " + path + " has no audio.sample_rate";
            voice_.sample_rate = j["audio"]["sample_rate"].get<int>();
            if (voice_.sample_rate < 8000 || voice_.sample_rate > 192000)
                return "piper: voice config " + path + ": audio.sample_rate " +
                       std::to_string(voice_.sample_rate) + " is out of range";
            voice_.phoneme_type = j.value("phoneme_type", std::string("espeak"));
            if (voice_.phoneme_type != "espeak" && voice_.phoneme_type != "text")
                return "piper: voice config " + path + ": phoneme_type '" + voice_.phoneme_type +
                       "' is not supported (espeak, text)";
            if (voice_.phoneme_type == "espeak") {
                if (!j.contains("espeak") || !j["espeak"].contains("voice"))
                    return "piper: voice config " + path + " has no espeak.voice";
                voice_.espeak_voice = j["espeak"]["voice"].get<std::string>();
            }
            if (j.contains("inference")) {
                const json &inf = j["inference"];
                voice_.noise_scale = inf.value("noise_scale", voice_.noise_scale);
                voice_.length_scale = inf.value("length_scale", voice_.length_scale);
                voice_.noise_w = inf.value("noise_w", voice_.noise_w);
            }
            voice_.num_speakers = std::max(1, j.value("num_speakers", 1));
            if (j.contains("speaker_id_map") && j["speaker_id_map"].is_object())
                for (auto &[name, id] : j["speaker_id_map"].items())
                    voice_.speakers[name] = id.get<int64_t>();

            if (!j.contains("phoneme_id_map") || !j["phoneme_id_map"].is_object() ||
                j["phoneme_id_map"].empty())
                return "piper: voice config " + path + " has no phoneme_id_map";
            for (auto &[key, ids] : j["phoneme_id_map"].items()) {
                std::u32string cps = decode_utf8(key);
                if (cps.size() != 1) {
                    log_warn("piper: %s: phoneme_id_map key '%s' is not one codepoint; ignored",
                             path.c_str(), key.c_str());
                    continue;
                }
                voice_.ids[cps[0]] = ids.get<std::vector<int64_t>>();
            }
            for (char32_t c : {U'^', U'_', U'$'})
                if (!voice_.ids.count(c))
                    return "piper: voice config " + path + ": phoneme_id_map lacks '" +
                           encode_utf8(c) + "'";
            if (j.contains("phoneme_map") && j["phoneme_map"].is_object())
                for (auto &[key, to] : j["phoneme_map"].items()) {
                    std::u32string from = decode_utf8(key);
                    if (from.size() != 1) continue;
                    std::u32string repl;
                    for (const auto &p : to)
                        repl += decode_utf8(p.get<std::string>());
                    voice_.phoneme_map[from[0]] = repl;
                }
        } catch (const json::exception &e) {
            return "piper: malformed voice config " + path + ": " + one_line(e.what());
        }
        return {};
    }

    std::string resolve(const tts_params &params, int64_t &sid, float &length_scale) const {
        if (params.rate_wpm < 80 || params.rate_wpm > 450)
            return "piper: rate must be 80..450 words per minute";
        length_scale = voice_.length_scale * float(BASE_RATE_WPM) / float(params.rate_wpm);
        sid = 0;
        if (voice_.num_speakers <= 1) return {};
        const std::string &v = params.voice;
        if (v.empty() || v == tts_params{}.voice || v == voice_.espeak_voice) return {};
        if (auto it = voice_.speakers.find(v); it != voice_.speakers.end()) {
            sid = it->second;
            return {};
        }
        if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
            v.size() < 9 && std::stoi(v) < voice_.num_speakers) {
            sid = std::stoi(v);
            return {};
        }
        std::string names;
        for (const auto &[name, id] : voice_.speakers)
            names += (names.empty() ? "" : ", ") + name;
        return "piper: voice " + config_.model_path + " has no speaker '" + v.substr(0, 64) + "' (speakers: " +
               (names.empty() ? "0.." + std::to_string(voice_.num_speakers - 1) : names) + ")";
    }

    // Codepoints of a clause's IPA as Piper takes them: language flags dropped, NFD, phoneme_map.
    void add_phonemes(std::u32string &out, std::string_view ipa) const {
        bool in_flag = false;
        for (char32_t c : decode_utf8(ipa)) {
            if (in_flag) {
                if (c == U')') in_flag = false;
                continue;
            }
            if (c == U'(') {
                in_flag = true;
                continue;
            }
            std::u32string nfd;
            append_nfd(nfd, c);
            for (char32_t p : nfd) {
                auto m = voice_.phoneme_map.find(p);
                if (m != voice_.phoneme_map.end())
                    out += m->second;
                else
                    out += p;
            }
        }
    }

    std::vector<sentence> phonemize_espeak(std::string_view text) const {
        std::vector<sentence> out;
        std::string buf(text); // espeak-ng reads up to the NUL
        std::lock_guard lock(espeak_mutex());
        if (!espeak_select_voice(voice_.espeak_voice))
            throw tts_error("piper: espeak-ng has no voice '" + voice_.espeak_voice + "'");
        const char *ptr = buf.c_str();
        const char *start = ptr;
        bool open = false;
        while (ptr != nullptr) {
            int terminator = 0;
            const char *ipa = espeak_TextToPhonemesWithTerminator(
                reinterpret_cast<const void **>(&ptr), espeakCHARS_UTF8, espeakPHONEMES_IPA,
                &terminator);
            // After a clause ended by punctuation and space, espeak-ng has read one character
            // more (the next clause's first): that one goes with the next clause's text.
            const char *end = ptr ? ptr : buf.c_str() + buf.size();
            if (ptr && end > start) {
                const char *back = end - 1;
                while (back > start && (static_cast<unsigned char>(*back) & 0xC0) == 0x80)
                    --back;
                unsigned char before = back > start ? static_cast<unsigned char>(back[-1]) : 0;
                if (std::isspace(before) || std::ispunct(before)) end = back;
            }
            clause c;
            c.text.assign(start, size_t(std::max<std::ptrdiff_t>(0, end - start)));
            if (ipa) add_phonemes(c.phonemes, ipa);
            switch (terminator & 0x000FFFFF) {
            case CLAUSE_PERIOD:
                c.phonemes += U'.';
                break;
            case CLAUSE_QUESTION:
                c.phonemes += U'?';
                break;
            case CLAUSE_EXCLAMATION:
                c.phonemes += U'!';
                break;
            case CLAUSE_COMMA:
                c.phonemes += U", ";
                break;
            case CLAUSE_COLON:
                c.phonemes += U": ";
                break;
            case CLAUSE_SEMICOLON:
                c.phonemes += U"; ";
                break;
            default:
                break;
            }
            if (!open) out.emplace_back();
            open = true;
            out.back().clauses.push_back(std::move(c));
            if ((terminator & CLAUSE_TYPE_SENTENCE) == CLAUSE_TYPE_SENTENCE) open = false;
            start = end;
        }
        return out;
    }

    // phoneme_type "text": the text's own codepoints (NFD), one sentence, as Piper does.
    std::vector<sentence> phonemize_text(std::string_view text) const {
        clause c;
        c.text = std::string(text);
        for (char32_t ch : decode_utf8(text)) {
            std::u32string nfd;
            append_nfd(nfd, ch);
            for (char32_t p : nfd) {
                auto m = voice_.phoneme_map.find(p);
                c.phonemes += m != voice_.phoneme_map.end() ? m->second : std::u32string(1, p);
            }
        }
        std::vector<sentence> out(1);
        out[0].clauses.push_back(std::move(c));
        return out;
    }

    // "^" "_" then each known phoneme followed by "_", then "$". Unknown phonemes are skipped.
    std::vector<int64_t> phoneme_ids(const sentence &s) const {
        std::vector<int64_t> ids;
        const std::vector<int64_t> &pad = voice_.ids.at(U'_');
        auto add = [&](const std::vector<int64_t> &v) {
            ids.insert(ids.end(), v.begin(), v.end());
        };
        add(voice_.ids.at(U'^'));
        add(pad);
        for (const clause &c : s.clauses)
            for (char32_t p : c.phonemes) {
                auto it = voice_.ids.find(p);
                if (it == voice_.ids.end()) {
                    log_debug("piper: phoneme '%s' (U+%04X) is not in the voice's phoneme_id_map; "
                              "skipped",
                              encode_utf8(p).c_str(), unsigned(p));
                    continue;
                }
                add(it->second);
                add(pad);
            }
        add(voice_.ids.at(U'$'));
        return ids;
    }

    // One model run; appends the sentence's audio, scaled to full range as Piper does.
    void run(std::vector<int64_t> &ids, int64_t sid, float length_scale,
             std::vector<int16_t> &pcm) const {
        try {
            Ort::MemoryInfo mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
            int64_t ids_shape[2] = {1, int64_t(ids.size())};
            int64_t length = int64_t(ids.size());
            int64_t one = 1, three = 3;
            float scales[3] = {voice_.noise_scale, length_scale, voice_.noise_w};
            std::vector<Ort::Value> inputs;
            inputs.push_back(
                Ort::Value::CreateTensor<int64_t>(mem, ids.data(), ids.size(), ids_shape, 2));
            inputs.push_back(Ort::Value::CreateTensor<int64_t>(mem, &length, 1, &one, 1));
            inputs.push_back(Ort::Value::CreateTensor<float>(mem, scales, 3, &three, 1));
            std::vector<const char *> names = {"input", "input_lengths", "scales"};
            if (has_sid_) {
                inputs.push_back(Ort::Value::CreateTensor<int64_t>(mem, &sid, 1, &one, 1));
                names.push_back("sid");
            }
            const char *out_name = output_name_.c_str();
            std::vector<Ort::Value> outputs = session_->Run(
                Ort::RunOptions{nullptr}, names.data(), inputs.data(), inputs.size(), &out_name, 1);
            auto info = outputs.at(0).GetTensorTypeAndShapeInfo();
            if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
                throw tts_error("piper: " + config_.model_path + ": output is not float audio");
            std::vector<int64_t> shape = info.GetShape();
            if (!shape.empty() && shape[0] != 1)
                throw tts_error("piper: " + config_.model_path + ": output batch is not 1");
            // [1, 1, 1, samples] from Piper's export; any shape with one utterance works.
            size_t n = info.GetElementCount();
            const float *audio = outputs[0].GetTensorData<float>();
            float peak = 0.01f;
            for (size_t i = 0; i < n; ++i)
                peak = std::max(peak, std::fabs(audio[i]));
            float gain = 32767.0f / peak;
            pcm.reserve(pcm.size() + n);
            for (size_t i = 0; i < n; ++i)
                pcm.push_back(int16_t(std::clamp(audio[i] * gain, -32767.0f, 32767.0f)));
        } catch (const Ort::Exception &e) {
            throw tts_error("piper: synthesis failed: " + one_line(e.what()));
        }
    }

    // Standard Piper voices give no durations, so word timings are an estimate: the sentence's
    // audio is shared among its clauses by phoneme count, and a clause's among its words by
    // their phoneme counts (espeak-ng's space-separated IPA words when they line up with the
    // text's words, else their lengths in characters).
    void add_word_estimates(const sentence &s, size_t begin, size_t end,
                            std::vector<tts_word> &words) const {
        size_t total = 0;
        for (const clause &c : s.clauses)
            total += c.phonemes.size();
        if (total == 0) return;
        const double per_phoneme = double(end - begin) / double(total);
        double at = double(begin);
        auto ms = [&](double sample) { return int(sample * 1000.0 / voice_.sample_rate); };
        for (const clause &c : s.clauses) {
            double span = per_phoneme * double(c.phonemes.size());
            std::vector<std::string> ws = text_words(c.text);
            std::vector<double> weight;
            std::vector<size_t> ipa_words;
            size_t len = 0;
            for (char32_t p : c.phonemes) {
                if (p == U' ') {
                    if (len) ipa_words.push_back(len);
                    len = 0;
                } else if (p != U'.' && p != U',' && p != U'?' && p != U'!' && p != U':' &&
                           p != U';') {
                    ++len;
                }
            }
            if (len) ipa_words.push_back(len);
            for (size_t i = 0; i < ws.size(); ++i)
                weight.push_back(ipa_words.size() == ws.size() ? double(ipa_words[i])
                                                               : double(decode_utf8(ws[i]).size()));
            double sum = 0;
            for (double w : weight)
                sum += w;
            double t = at;
            for (size_t i = 0; i < ws.size(); ++i) {
                double d = sum > 0 ? span * weight[i] / sum : 0;
                words.push_back({ws[i], ms(t), ms(t + d)});
                t += d;
            }
            at += span;
        }
    }

    const tts_config config_;
    std::mutex load_m_;
    bool loaded_ = false;
    std::string load_error_;
    voice_config voice_;
    mutable std::optional<Ort::Session> session_; // Run() is non-const in the C++ API, thread-safe
    bool has_sid_ = false;
    std::string output_name_;
};

} // namespace

std::unique_ptr<tts_engine> make_tts_piper(const tts_config &config) {
    return std::make_unique<tts_piper>(config);
}

} // namespace parley
