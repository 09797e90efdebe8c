// The real engines: llama.cpp with stories260K, PocketSphinx on LibriVox speech, espeak-ng.
#include "asr/asr.h"
#include "audio/audio-file.h"
#include "audio/resampler.h"
#include "core/guard.h"
#include "llm/conversation.h"
#include "llm/llm.h"
#include "tts/espeak-lock.h"
#include "tts/tts.h"

#include <espeak-ng/speak_lib.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <thread>

using namespace parley;

namespace {

bool exists(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

std::string model_path() {
    if (const char *m = getenv("PARLEY_TEST_MODEL")) return m;
    const char *src = getenv("PARLEY_SOURCE_DIR");
    return std::string(src ? src : ".") + "/../shared/models/stories260K.gguf";
}

const std::string librivox = "/usr/share/pocketsphinx/test/data/librivox/";

// A passage's words as the test data's forced alignment of its reference text places them (its
// .json: "w", each word with its beginning "b" and duration "d" in seconds), fillers left out.
std::vector<asr_word> aligned_words(const std::string &json_path, double offset) {
    std::ifstream f(json_path);
    nlohmann::json j = nlohmann::json::parse(f);
    std::vector<asr_word> out;
    for (const auto &w : j.at("w")) {
        std::string t = w.at("t");
        if (t.empty() || t[0] == '<' || t[0] == '[') continue;
        if (size_t open = t.find('('); open != std::string::npos) t.resize(open);
        double b = w.at("b"), d = w.at("d");
        out.push_back({t, offset + b, offset + b + d});
    }
    return out;
}

std::string stream_text(asr_engine &asr, const std::vector<int16_t> &pcm) {
    auto stream = asr.open();
    stream->accept(pcm);
    return stream->finish();
}

std::vector<std::string> words(const std::string &s) {
    std::vector<std::string> out;
    std::string w;
    for (char c : s) {
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '\'') {
            w += char(std::tolower(static_cast<unsigned char>(c)));
        } else if (!w.empty()) {
            out.push_back(w);
            w.clear();
        }
    }
    if (!w.empty()) out.push_back(w);
    return out;
}

double wer(const std::string &ref, const std::string &hyp) {
    auto r = words(ref), h = words(hyp);
    std::vector<std::vector<size_t>> d(r.size() + 1, std::vector<size_t>(h.size() + 1));
    for (size_t i = 0; i <= r.size(); ++i)
        d[i][0] = i;
    for (size_t j = 0; j <= h.size(); ++j)
        d[0][j] = j;
    for (size_t i = 1; i <= r.size(); ++i)
        for (size_t j = 1; j <= h.size(); ++j)
            d[i][j] = std::min(
                {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + size_t(r[i - 1] != h[j - 1])});
    return r.empty() ? 0.0 : double(d[r.size()][h.size()]) / double(r.size());
}

struct collected {
    std::mutex m;
    std::condition_variable cv;
    std::string pieces;
    bool done = false;
    llm_result result;
};

llm_request make_request(int slot, std::vector<turn_record> *history, const std::string &user,
                         collected &c, int max_tokens = 24) {
    llm_request req;
    req.slot = slot;
    req.max_tokens = max_tokens;
    req.sampling.temperature = 0; // greedy: repeatable
    req.messages = [history, user](int budget, const token_counter &count) {
        return fit_history("", *history, user, budget, count);
    };
    req.on_piece = [&c](std::string_view p) {
        std::lock_guard lock(c.m);
        c.pieces += p;
    };
    req.on_done = [&c](const llm_result &r) {
        std::lock_guard lock(c.m);
        c.result = r;
        c.done = true;
        c.cv.notify_all();
    };
    return req;
}

std::unique_ptr<llm_engine> engine_with_slots(int slots) {
    llm_config cfg;
    cfg.model_path = model_path();
    cfg.slots = slots;
    return make_llm_engine(cfg);
}

void wait(collected &c) {
    std::unique_lock lock(c.m);
    ASSERT_TRUE(c.cv.wait_for(lock, std::chrono::seconds(30), [&] { return c.done; }));
}

} // namespace

TEST(llm_llama, streams_and_reuses_the_kv_cache_across_turns) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model at " << model_path();
    auto llm = engine_with_slots(2);
    int slot = llm->acquire_slot();
    ASSERT_GE(slot, 0);
    std::vector<turn_record> history;
    collected a;
    llm->submit(make_request(slot, &history, "Once upon a time there was a little girl.", a));
    wait(a);
    EXPECT_EQ(a.result.stop_reason == LLM_STOP_LENGTH || a.result.stop_reason == LLM_STOP_EOG ||
                  a.result.stop_reason == LLM_STOP_STOP,
              true)
        << llm_stop_name(a.result.stop_reason);
    EXPECT_GT(a.result.generated_tokens, 0);
    EXPECT_EQ(a.pieces, a.result.text);
    EXPECT_EQ(a.result.cached_tokens, 0);
    history.push_back(
        {1, "Once upon a time there was a little girl.", a.result.text, false, "{}", 0});

    collected b;
    llm->submit(make_request(slot, &history, "What did she do?", b));
    wait(b);
    EXPECT_GT(b.result.cached_tokens, 10) << "the first turn's tokens stay in the slot's cache";
    EXPECT_GT(b.result.prompt_tokens, b.result.cached_tokens);
    llm->release_slot(slot);
}

// A conversation that outgrows its context drops its oldest turns (fit_history): the cached
// tokens after the cut move down in the KV cache instead of being evaluated again, and the
// reply is the one a fresh cache gives for the same prompt.
TEST(llm_llama, dropping_the_oldest_turn_keeps_the_rest_of_the_cache) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model at " << model_path();
    auto llm = engine_with_slots(2);
    int kept = llm->acquire_slot(), fresh = llm->acquire_slot();
    ASSERT_GE(fresh, 0);
    const std::string system = "You are a storyteller for small children.";
    std::vector<chat_message> turns = {
        {"user", "Once upon a time there was a little girl called Lily."},
        {"assistant", "Lily loved to play in the park with her big red ball every day."},
        {"user", "One day she met a friendly dog near the pond."},
        {"assistant", "The dog wagged its tail and ran around the tree with Lily."},
        {"user", "What happened when it started to rain?"}};
    std::vector<chat_message> shared = {{"system", system}};
    shared.insert(shared.end(), turns.begin() + 2, turns.end());
    int shared_tokens = 0; // the cut conversation's tokens that the first prompt also has
    auto request = [&](int slot, std::vector<chat_message> messages, collected &c) {
        llm_request req = make_request(slot, nullptr, "", c, 16);
        req.messages = [messages, &shared, &shared_tokens](int, const token_counter &count) {
            shared_tokens = count(shared);
            return messages;
        };
        llm->submit(std::move(req));
        wait(c);
    };
    std::vector<chat_message> all = {{"system", system}};
    all.insert(all.end(), turns.begin(), turns.end());
    collected first;
    request(kept, all, first);
    // The next turn without the first exchange.
    std::vector<chat_message> cut = {{"system", system}};
    cut.insert(cut.end(), turns.begin() + 2, turns.end());
    cut.push_back({"assistant", first.result.text});
    cut.push_back({"user", "Where did they go after that?"});
    collected shifted, reference;
    request(kept, cut, shifted);
    request(fresh, cut, reference);
    EXPECT_EQ(reference.result.cached_tokens, 0);
    EXPECT_EQ(shifted.result.prompt_tokens, reference.result.prompt_tokens);
    // The turns kept came from the cache (all but the few tokens where formatting differs).
    EXPECT_GE(shifted.result.cached_tokens, shared_tokens - 4)
        << "prompt " << shifted.result.prompt_tokens;
    EXPECT_GT(shared_tokens, 40);
    EXPECT_EQ(shifted.result.text, reference.result.text);
    llm->release_slot(kept);
    llm->release_slot(fresh);
}

TEST(llm_llama, several_slots_decode_together) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    auto llm = engine_with_slots(4);
    std::vector<turn_record> history;
    std::vector<std::unique_ptr<collected>> cs;
    for (int i = 0; i < 4; ++i) {
        cs.push_back(std::make_unique<collected>());
        llm->submit(make_request(llm->acquire_slot(), &history, "The cat sat", *cs.back(), 32));
    }
    for (auto &c : cs) {
        wait(*c);
        EXPECT_GT(c->result.generated_tokens, 0);
    }
    // Greedy decoding of the same prompt gives the same text in every slot.
    for (auto &c : cs)
        EXPECT_EQ(c->result.text, cs[0]->result.text);
}

// Prefills prepare a session's cache while its user speaks; they must never delay a reply. Requests
// submitted from a callback (on the engine's thread, between two steps) are all queued when the
// engine next admits: there a reply goes before an earlier prefill, and a prefill with a later
// request of its own slot behind it is dropped.
TEST(llm_llama, replies_go_before_prefills_and_a_later_request_supersedes_a_prefill) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    auto llm = engine_with_slots(4);
    std::vector<turn_record> history;
    std::mutex m;
    std::vector<std::string> order; // what happened, in order
    auto note = [&](const std::string &what) {
        std::lock_guard lock(m);
        order.push_back(what);
    };
    collected first, prefill_a, reply_b, prefill_c, reply_c;
    auto prefill = [&](int slot, collected &c, const std::string &name) {
        llm_request r = make_request(slot, &history, "The dog ran to the park", c, 0);
        auto done = r.on_done;
        r.on_done = [done, note, name](const llm_result &res) {
            note(name + " " + llm_stop_name(res.stop_reason));
            done(res);
        };
        return r;
    };
    llm_request opener = make_request(0, &history, "Once upon a time", first, 8);
    bool submitted = false;
    opener.on_piece = [&](std::string_view) {
        if (submitted) return;
        submitted = true;
        llm->submit(prefill(1, prefill_a, "prefill 1"));
        llm_request b = make_request(2, &history, "The cat sat", reply_b, 4);
        b.on_piece = [note](std::string_view) { note("reply 2 piece"); };
        llm->submit(std::move(b));
        llm->submit(prefill(3, prefill_c, "prefill 3"));
        llm->submit(make_request(3, &history, "The dog ran to the park and", reply_c, 4));
    };
    llm->submit(std::move(opener));
    for (collected *c : {&first, &prefill_a, &reply_b, &prefill_c, &reply_c})
        wait(*c);
    EXPECT_EQ(prefill_a.result.stop_reason, LLM_STOP_PREFILL);
    EXPECT_EQ(prefill_c.result.stop_reason, LLM_STOP_SUPERSEDED);
    EXPECT_GT(reply_c.result.generated_tokens, 0);
    std::lock_guard lock(m);
    auto at = [&](const std::string &what) {
        return std::find(order.begin(), order.end(), what) - order.begin();
    };
    ASSERT_LT(at("reply 2 piece"), long(order.size())) << "reply 2 gave no text";
    EXPECT_LT(at("reply 2 piece"), at("prefill 1 prefill"));
}

// A reply whose listener waits for its first words (urgent) is decoded alone while it is urgent:
// a reply already being heard gets one step in URGENT_SKIP_MAX + 1 (8 + 1), never none, and both
// go on together once the first phrase is out. All callbacks run on the engine's thread.
TEST(llm_llama, an_urgent_reply_is_decoded_alone_and_the_others_are_not_starved) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    auto llm = engine_with_slots(2);
    std::vector<turn_record> history;
    std::string order; // 'a' or 'b' per piece, in order
    collected a, b;
    auto urgent = std::make_shared<std::atomic<bool>>(true);
    llm_request ra = make_request(0, &history, "Once upon a time", a, 120);
    llm_request rb = make_request(1, &history, "The cat sat on the mat", b, 60);
    rb.urgent = urgent;
    int b_pieces = 0;
    rb.on_piece = [&](std::string_view) {
        order += 'b';
        if (++b_pieces == 27) urgent->store(false); // its "first phrase" is out
    };
    bool submitted = false;
    ra.on_piece = [&](std::string_view) {
        order += 'a';
        if (order.size() == 5 && !submitted) {
            submitted = true;
            llm->submit(std::move(rb));
        }
    };
    llm->submit(std::move(ra));
    wait(a);
    wait(b);
    ASSERT_GE(b.result.generated_tokens, 40) << b.pieces;
    ASSERT_GE(a.result.generated_tokens, 60) << a.pieces;
    // While b was urgent (its pieces 1..27), a had one step in nine: about 3 pieces, not 27.
    size_t first_b = order.find('b');
    size_t b27 = first_b;
    for (int k = 1; k < 27; ++k)
        b27 = order.find('b', b27 + 1);
    ASSERT_NE(b27, std::string::npos) << order;
    auto count_a = [&](size_t from, size_t to) {
        return std::count(order.begin() + long(from), order.begin() + long(to), 'a');
    };
    long a_while_urgent = count_a(first_b, b27);
    EXPECT_GE(a_while_urgent, 1) << order; // not starved
    EXPECT_LE(a_while_urgent, 5) << order;
    // Afterwards they share every step.
    size_t after_end = std::min(order.size(), b27 + 20);
    EXPECT_GE(count_a(b27, after_end), 7) << order;
}

// A reply cancelled while its prompt is being evaluated (a speculative start the user talked
// over) takes only its own tokens out of the slot's cache: the conversation before it stays, and
// the next turn evaluates only what is new. (The whole slot was wiped: a 1.5B turn took 7 s.)
TEST(llm_llama, a_cancel_during_the_prompt_keeps_the_conversation_cached) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    auto llm = engine_with_slots(1);
    std::vector<turn_record> history;
    collected first;
    llm->submit(make_request(0, &history, "Once upon a time", first, 24));
    wait(first);
    std::string reply = first.pieces;
    reply.erase(0, reply.find_first_not_of(' ')); // as the session stores it
    history.push_back({1, "Once upon a time", reply, false, "{}", 0});
    bool cancelled_in_prompt = false;
    int conversation = 0; // the cached prefix the cancelled request found
    for (int attempt = 0; attempt < 5 && !cancelled_in_prompt; ++attempt) {
        std::string long_message = "attempt " + std::to_string(attempt);
        for (int i = 0; i < 100; ++i) // about 1,000 tokens: the history still fits beside it
            long_message += " the dog ran to the park";
        collected b;
        llm_request rb = make_request(0, &history, long_message, b, 8);
        rb.cancel = std::make_shared<std::atomic<bool>>(false);
        auto cancel = rb.cancel;
        llm->submit(std::move(rb));
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        cancel->store(true);
        wait(b);
        EXPECT_EQ(b.result.stop_reason, LLM_STOP_CANCELLED);
        cancelled_in_prompt = b.result.generated_tokens == 0 && b.result.prompt_tokens > 500;
        conversation = b.result.cached_tokens;
    }
    ASSERT_TRUE(cancelled_in_prompt) << "the cancel never came during the prompt";
    ASSERT_GT(conversation, first.result.prompt_tokens) << "the first reply was cached";
    collected c;
    llm->submit(make_request(0, &history, "The cat sat", c, 4));
    wait(c);
    EXPECT_GE(c.result.cached_tokens, conversation - 2) << c.result.prompt_tokens;
}

// A 64-token reply to one line from a fresh engine with one slot (cfg's other settings kept).
static llm_result story_reply(llm_config cfg, const sampling_params &s) {
    cfg.model_path = model_path();
    cfg.slots = 1;
    auto llm = make_llm_engine(cfg);
    std::vector<turn_record> history;
    collected c;
    auto req = make_request(0, &history, "Once upon a time there was a dog.", c, 64);
    req.slot = -1;
    req.sampling = s;
    llm->submit(std::move(req));
    wait(c);
    return c.result;
}

// The one-pass candidate preselection must pick exactly what llama.cpp's chain picks from the
// whole vocabulary: greedy, greedy with repeat penalties, and seeded top-k/top-p/min-p sampling.
TEST(llm_llama, preselected_sampling_picks_the_same_tokens_as_the_whole_vocabulary) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    auto generate = [](bool preselect, const sampling_params &s) {
        llm_config cfg;
        cfg.preselect = preselect;
        return story_reply(cfg, s);
    };
    sampling_params greedy;
    greedy.temperature = 0;
    greedy.repeat_penalty = 1.0f;
    sampling_params penalised = greedy;
    penalised.repeat_penalty = 1.3f;
    sampling_params seeded; // the server's defaults: top-k 40, top-p, min-p, temperature
    seeded.seed = 42;
    for (const sampling_params &s : {greedy, penalised, seeded}) {
        llm_result fast = generate(true, s), full = generate(false, s);
        EXPECT_GT(full.generated_tokens, 8);
        EXPECT_EQ(fast.generated_tokens, full.generated_tokens);
        EXPECT_EQ(fast.text, full.text)
            << "temperature " << s.temperature << " penalty " << s.repeat_penalty;
    }
    // Different settings do sample differently (the comparison above is not vacuous).
    EXPECT_NE(generate(true, greedy).text, generate(true, penalised).text);
}

// Flash attention is a different kernel for the same attention: off (auto's choice for
// stories260K's 8-wide heads) and on give the same greedy reply.
TEST(llm_llama, flash_attention_on_and_off_give_the_same_reply) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    auto generate = [](llm_flash_attn flash) {
        llm_config cfg;
        cfg.flash_attn = flash;
        sampling_params greedy;
        greedy.temperature = 0;
        greedy.repeat_penalty = 1.0f;
        return story_reply(cfg, greedy);
    };
    llm_result off = generate(LLM_FLASH_ATTN_AUTO), on = generate(LLM_FLASH_ATTN_ON),
               off2 = generate(LLM_FLASH_ATTN_OFF);
    EXPECT_EQ(off.text, off2.text);
    EXPECT_GT(off.generated_tokens, 8);
    EXPECT_EQ(off.text, on.text);
}

// A paused request generates nothing and keeps its place; cleared, it goes on to the end
// (another request meanwhile is served as usual).
TEST(llm_llama, a_paused_request_waits_and_then_goes_on) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    auto llm = engine_with_slots(2);
    std::vector<turn_record> history;
    collected a, b;
    auto req = make_request(llm->acquire_slot(), &history, "Once upon a time", a, 40);
    auto pause = std::make_shared<std::atomic<bool>>(false);
    req.pause = pause;
    std::atomic<int> seen = 0;
    req.on_piece = [&](std::string_view) {
        if (++seen == 3) pause->store(true);
    };
    llm->submit(std::move(req));
    // However slow the machine (ctest runs tests side by side), the third piece comes.
    for (int i = 0; i < 1000 && seen.load() < 3; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_GE(seen.load(), 3);
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // paused: nothing more comes
    int while_paused = seen.load();
    EXPECT_LE(while_paused, 4); // at most the token already being decoded
    llm->submit(make_request(llm->acquire_slot(), &history, "The cat sat", b, 16));
    wait(b);
    EXPECT_GT(b.result.generated_tokens, 0);
    EXPECT_EQ(seen.load(), while_paused) << "still paused while the other request ran";
    pause->store(false);
    llm->wake();
    wait(a);
    EXPECT_EQ(a.result.generated_tokens, 40);
    EXPECT_EQ(a.result.stop_reason, LLM_STOP_LENGTH);
}

TEST(llm_llama, cancel_stops_generation) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    llm_config cfg;
    cfg.model_path = model_path();
    auto llm = make_llm_engine(cfg);
    std::vector<turn_record> history;
    collected c;
    auto req = make_request(llm->acquire_slot(), &history, "Once upon a time", c, 1000);
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    req.cancel = cancel;
    int seen = 0;
    req.on_piece = [&](std::string_view) {
        if (++seen == 5) cancel->store(true);
    };
    llm->submit(std::move(req));
    wait(c);
    EXPECT_EQ(c.result.stop_reason, LLM_STOP_CANCELLED);
    EXPECT_LE(c.result.generated_tokens, 6);
}

TEST(llm_llama, missing_and_corrupt_files_name_the_file) {
    llm_config cfg;
    cfg.model_path = "/nonexistent/model.gguf";
    try {
        make_llm_engine(cfg);
        FAIL();
    } catch (const llm_error &e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
    }
    std::string bad = ::testing::TempDir() + "corrupt.gguf";
    {
        std::ofstream f(bad, std::ios::binary);
        f << "GGUF" << std::string(100, '\x07');
    }
    cfg.model_path = bad;
    try {
        make_llm_engine(cfg);
        FAIL();
    } catch (const llm_error &e) {
        EXPECT_NE(std::string(e.what()).find(bad), std::string::npos);
    }
    {
        std::ofstream f(bad, std::ios::binary);
        f << "not a model";
    }
    EXPECT_THROW(make_llm_engine(cfg), llm_error);
}

TEST(asr_pocketsphinx, transcribes_librivox_speech) {
    std::string wav = librivox + "sense_and_sensibility_01_austen_64kb-0870.wav";
    if (!exists(wav)) GTEST_SKIP() << "pocketsphinx-testdata is not installed";
    std::ifstream ref_file(librivox + "sense_and_sensibility_01_austen_64kb-0870.txt");
    std::stringstream ref;
    ref << ref_file.rdbuf();
    pcm_audio audio = read_audio_file(wav);
    auto asr = make_asr_engine({});
    auto stream = asr->open();
    resampler rs(audio.sample_rate, ASR_SAMPLE_RATE);
    std::string partial;
    size_t frame = size_t(audio.sample_rate) / 50; // 20 ms
    for (size_t i = 0; i < audio.samples.size(); i += frame) {
        size_t n = std::min(frame, audio.samples.size() - i);
        stream->accept(rs.process(std::span<const int16_t>(audio.samples).subspan(i, n)));
        if (partial.empty()) partial = stream->partial();
    }
    stream->accept(rs.flush());
    std::string text = stream->finish();
    EXPECT_FALSE(partial.empty()) << "partials while the audio arrives";
    double w = wer(ref.str(), text);
    EXPECT_LE(w, 0.5) << "hyp: " << text << "\nref: " << ref.str();
    // The stream is reusable for the next utterance.
    stream->accept(rs.process(audio.samples));
    EXPECT_FALSE(stream->finish().empty());
}

// Word times from the decoder's segmentation: two passages with a second and a half of silence
// between them, each word where its passage is, every word of the transcript timed once.
TEST(asr_pocketsphinx, times_each_word_of_the_transcript) {
    std::string a_wav = librivox + "sense_and_sensibility_01_austen_64kb-0870.wav";
    std::string b_wav = librivox + "sense_and_sensibility_01_austen_64kb-0880.wav";
    if (!exists(a_wav) || !exists(b_wav)) GTEST_SKIP() << "pocketsphinx-testdata is not installed";
    pcm_audio a = read_audio_file(a_wav), b = read_audio_file(b_wav);
    ASSERT_EQ(a.sample_rate, ASR_SAMPLE_RATE);
    ASSERT_EQ(b.sample_rate, ASR_SAMPLE_RATE);
    const double a_end = double(a.samples.size()) / ASR_SAMPLE_RATE, b_start = a_end + 1.5;
    std::vector<int16_t> pcm = a.samples;
    pcm.resize(size_t(b_start * ASR_SAMPLE_RATE), 0);
    pcm.insert(pcm.end(), b.samples.begin(), b.samples.end());
    const double length = double(pcm.size()) / ASR_SAMPLE_RATE;
    for (bool fast : {false, true}) {
        SCOPED_TRACE(fast ? "fast" : "full search");
        asr_config config;
        config.fast = fast;
        auto asr = make_asr_engine(config);
        ASSERT_TRUE(asr->times_words());
        auto stream = asr->open();
        stream->accept(pcm);
        std::vector<asr_word> timed;
        std::string text = stream->finish_timed(&timed);
        std::string joined;
        for (const asr_word &w : timed)
            joined += (joined.empty() ? "" : " ") + w.word;
        EXPECT_EQ(joined, text);
        size_t in_a = 0, in_b = 0;
        double last = 0;
        for (const asr_word &w : timed) {
            EXPECT_LT(w.start, w.end) << w.word;
            EXPECT_GE(w.start, last - 1e-9) << w.word << ": in order";
            EXPECT_LE(w.end, length + 1e-9) << w.word;
            last = w.end;
            if (w.end <= a_end + 0.1)
                ++in_a;
            else if (w.start >= b_start - 0.1)
                ++in_b;
            else
                ADD_FAILURE() << w.word << " at " << w.start << "-" << w.end
                              << " s: inside the silence (" << a_end << "-" << b_start << ")";
        }
        // Each passage's words where the passage is: as many as it has, give or take the
        // recogniser's errors.
        size_t a_words = words(stream_text(*asr, a.samples)).size(),
               b_words = words(stream_text(*asr, b.samples)).size();
        EXPECT_NEAR(double(in_a), double(a_words), 2.0 + a_words * 0.2);
        EXPECT_NEAR(double(in_b), double(b_words), 2.0 + b_words * 0.2);
        // Against the forced alignment of the reference text: a recognised word that is the
        // next reference word (in order) starts where the alignment starts it.
        std::vector<asr_word> ref = aligned_words(a_wav.substr(0, a_wav.size() - 4) + ".json", 0);
        for (const asr_word &w :
             aligned_words(b_wav.substr(0, b_wav.size() - 4) + ".json", b_start))
            ref.push_back(w);
        size_t r = 0, matched = 0;
        double worst = 0;
        for (const asr_word &w : timed) {
            size_t k = r;
            while (k < ref.size() && k < r + 3 && ref[k].word != w.word)
                ++k;
            if (k == ref.size() || ref[k].word != w.word) continue;
            worst = std::max(worst, std::abs(w.start - ref[k].start));
            EXPECT_NEAR(w.start, ref[k].start, 0.15) << w.word;
            EXPECT_NEAR(w.end, ref[k].end, 0.25) << w.word;
            ++matched;
            r = k + 1;
        }
        EXPECT_GE(matched, ref.size() * 2 / 3) << "most words found in order";
        std::cerr << "  " << (fast ? "fast" : "full") << ": " << matched << " of " << ref.size()
                  << " words matched, starts within " << worst * 1000 << " ms of the alignment\n";
        // The stream goes on: the next utterance's words start from its own first sample.
        stream->accept(b.samples);
        text = stream->finish_timed(&timed);
        ASSERT_FALSE(timed.empty());
        EXPECT_LT(timed.front().start, 1.0);
    }
}

TEST(tts_espeak, speaks_with_word_timings) {
    auto tts = make_tts_engine({});
    ASSERT_TRUE(tts);
    tts_params p;
    ASSERT_EQ(tts->check(p), "");
    tts_result r = tts->synthesize("Hello brave new world.", p);
    EXPECT_EQ(r.sample_rate, 22050);
    EXPECT_GT(r.pcm.size(), size_t(22050 / 2));
    int peak = 0;
    for (int16_t s : r.pcm)
        peak = std::max(peak, std::abs(int(s)));
    EXPECT_GT(peak, 1000) << "audible speech, not silence";
    ASSERT_EQ(r.words.size(), 4u);
    EXPECT_EQ(r.words[0].text, "Hello");
    int total_ms = int(r.pcm.size() * 1000 / 22050);
    for (size_t i = 0; i < r.words.size(); ++i) {
        EXPECT_LE(r.words[i].start_ms, r.words[i].end_ms);
        EXPECT_LE(r.words[i].end_ms, total_ms);
        if (i) EXPECT_GE(r.words[i].start_ms, r.words[i - 1].start_ms);
    }
}

TEST(tts_espeak, unknown_voice_is_reported_and_the_engine_keeps_working) {
    auto tts = make_tts_engine({});
    tts_params bad;
    bad.voice = "no-such-voice-xx";
    EXPECT_NE(tts->check(bad), "");
    EXPECT_THROW(tts->synthesize("hi", bad), tts_error);
    EXPECT_FALSE(tts->synthesize("Still speaking.", tts_params{}).pcm.empty());
}

TEST(tts_espeak, a_clients_voice_and_variant_are_checked_by_name_before_the_library) {
    auto tts = make_tts_engine({});
    ASSERT_EQ(tts->check(tts_params{}), "");
    EXPECT_TRUE(tts->knows_voice("en-us"));
    EXPECT_TRUE(tts->knows_voice("EN-US+m3"));
    EXPECT_TRUE(tts->knows_voice("English (America)"));
    EXPECT_TRUE(tts->knows_voice("en-gb")) << "a language espeak-ng lists, as `espeak-ng -v en-gb`";
    // A variant longer than espeak-ng's buffer, a path, an unknown variant, an empty name.
    for (std::string bad : {"en-us+" + std::string(37, 'x'), "en-us+" + std::string(4000, 'x'),
                            std::string("en-us+../../../../etc/passwd"), std::string("../../etc"),
                            std::string("en-us+nope"), std::string("en-us+"), std::string("")}) {
        EXPECT_FALSE(tts->knows_voice(bad)) << bad.substr(0, 60);
        tts_params p;
        p.voice = bad;
        EXPECT_NE(tts->check(p), "") << bad.substr(0, 60);
        EXPECT_THROW(tts->synthesize("hi", p), tts_error);
    }
    tts_params m3;
    m3.voice = "en-us+m3";
    EXPECT_FALSE(tts->synthesize("Still speaking.", m3).pcm.empty());
    EXPECT_FALSE(tts->synthesize("Still speaking.", tts_params{}).pcm.empty());
}

TEST(tts_espeak, every_voice_and_variant_espeak_lists_can_be_chosen) {
    std::lock_guard lock(espeak_mutex());
    ASSERT_GT(espeak_initialize_once(), 0);
    // espeak_ListVoices() reuses one array for every call: copy each list before the next.
    auto list = [](espeak_VOICE *spec) {
        std::vector<std::pair<std::string, std::string>> out; // name, identifier
        for (const espeak_VOICE **v = espeak_ListVoices(spec); v && *v; ++v)
            out.emplace_back((*v)->name ? (*v)->name : "", (*v)->identifier);
        return out;
    };
    espeak_VOICE spec{};
    spec.languages = "variant";
    auto voices = list(nullptr);
    auto variants = list(&spec);
    EXPECT_GT(voices.size(), 10u);
    EXPECT_GT(variants.size(), 10u);
    for (const auto &[name, id] : voices) {
        EXPECT_EQ(espeak_voice_name(id), id);
        EXPECT_EQ(espeak_voice_name(id.substr(id.rfind('/') + 1)), id);
        EXPECT_TRUE(espeak_select_voice(name)) << name;
    }
    std::string en_us = espeak_voice_name("en-us");
    ASSERT_NE(en_us, "");
    for (const auto &[name, id] : variants) {
        std::string file = id.substr(id.rfind('/') + 1);
        EXPECT_EQ(espeak_voice_name("en-us+" + file), en_us + "+" + file);
        EXPECT_TRUE(espeak_select_voice("en-us+" + name)) << name;
    }
    EXPECT_TRUE(espeak_select_voice("en-us"));
}

TEST(guard, a_throwing_handler_becomes_a_message_and_the_caller_goes_on) {
    EXPECT_EQ(run_guarded("test", [] {}), "");
    EXPECT_EQ(run_guarded("test", [] { throw std::runtime_error("store: no such table"); }),
              "store: no such table");
    EXPECT_NE(run_guarded("test", [] { throw std::bad_alloc(); }), "");
    EXPECT_EQ(run_guarded("test", [] { throw 42; }), "an unknown failure");
    int after = 0;
    run_guarded("test", [&] { after = 1; });
    EXPECT_EQ(after, 1);
}

TEST(tts, speakable) {
    EXPECT_TRUE(tts_speakable("Hi."));
    EXPECT_TRUE(tts_speakable("42"));
    EXPECT_FALSE(tts_speakable("..."));
    EXPECT_FALSE(tts_speakable(""));
}

TEST(llm_llama, long_history_drops_the_oldest_turns_and_keeps_the_system_prompt) {
    if (!exists(model_path())) GTEST_SKIP() << "no test model";
    llm_config cfg;
    cfg.model_path = model_path();
    cfg.context = 256;
    auto llm = make_llm_engine(cfg);
    ASSERT_EQ(llm->slot_context(), 256);
    std::vector<turn_record> history;
    for (int i = 1; i <= 30; ++i)
        history.push_back({i, "Tell me about the little dog number " + std::to_string(i) + ".",
                           "The little dog ran and played in the big green park all day long.",
                           false, "{}", 0});
    collected c;
    std::vector<chat_message> seen;
    llm_request req = make_request(llm->acquire_slot(), &history, "And the cat?", c, 32);
    req.messages = [&](int budget, const token_counter &count) {
        seen = fit_history("You are a storyteller.", history, "And the cat?", budget, count);
        return seen;
    };
    llm->submit(std::move(req));
    wait(c);
    EXPECT_NE(c.result.stop_reason, LLM_STOP_ERROR) << c.result.error;
    EXPECT_LE(c.result.prompt_tokens + 32, 256);
    ASSERT_GE(seen.size(), 4u);
    EXPECT_EQ(seen.front().content, "You are a storyteller.");
    EXPECT_EQ(seen.back().content, "And the cat?");
    EXPECT_LT(seen.size(), 2 + 2 * history.size()) << "old turns were dropped";
    EXPECT_EQ(seen[seen.size() - 3].content, history.back().user) << "the newest turn stays";
}
