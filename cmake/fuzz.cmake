# libFuzzer targets: the parsers that read what a client, an upload or a file sends. Configured
# on their own (-DPARLEY_FUZZ=ON with clang; tests/fuzz/run does it in build-fuzz/), built with
# AddressSanitizer and UndefinedBehaviorSanitizer, and only from the sources they need.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PARLEY_FUZZ needs clang: CXX=clang++ cmake -DPARLEY_FUZZ=ON ...")
endif()

find_package(PkgConfig REQUIRED)
pkg_check_modules(SNDFILE REQUIRED IMPORTED_TARGET sndfile)
pkg_check_modules(SOXR REQUIRED IMPORTED_TARGET soxr)
pkg_check_modules(FFMPEG REQUIRED IMPORTED_TARGET libavformat libavcodec libswresample libavutil)
find_package(nlohmann_json REQUIRED)
find_package(Boost CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)

set(PARLEY_SANITIZE -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g -O1)

add_library(parley_fuzz_parsers STATIC
    src/app/config.cpp
    src/core/option-table.cpp
    src/asr/asr-options.cpp
    src/llm/llm-options.cpp
    src/net/server-options.cpp
    src/pipeline/session-options.cpp
    src/tts/tts-options.cpp
    src/net/native-protocol.cpp
    src/store/turn-timings-json.cpp
    src/store/store-url.cpp
    src/text/utf8.cpp
    src/audio/audio-file.cpp
    src/audio/audio-ffmpeg.cpp
    src/audio/resampler.cpp
    src/audio/vad-params.cpp
    src/llm/llm.cpp
    src/models/model-manifest.cpp
    src/core/sha256.cpp
    src/core/secret.cpp
    src/net/access.cpp
    src/net/http-request.cpp
    src/net/multipart.cpp
    src/llm/json-grammar.cpp
    src/llm/tool-calls.cpp)
target_include_directories(parley_fuzz_parsers PUBLIC src)
target_compile_options(parley_fuzz_parsers PUBLIC ${PARLEY_SANITIZE} PRIVATE -fsanitize=fuzzer-no-link)
target_link_options(parley_fuzz_parsers PUBLIC -fsanitize=address,undefined)
target_link_libraries(parley_fuzz_parsers PUBLIC
    PkgConfig::SNDFILE PkgConfig::SOXR PkgConfig::FFMPEG nlohmann_json::nlohmann_json Boost::headers OpenSSL::Crypto)

# The Realtime endpoint runs over a real session (scripted engines): the pipeline's sources
# and the libraries of its VAD and echo canceller.
pkg_check_modules(ONNXRUNTIME REQUIRED IMPORTED_TARGET libonnxruntime)
pkg_check_modules(WEBRTC_AUDIO_PROCESSING REQUIRED webrtc-audio-processing-1)
find_package(Threads REQUIRED)
set_source_files_properties(src/audio/echo-canceller.cpp PROPERTIES
    COMPILE_OPTIONS "${WEBRTC_AUDIO_PROCESSING_CFLAGS}")
add_library(parley_fuzz_session STATIC
    src/net/realtime-protocol.cpp
    src/net/openai-rest.cpp
    src/pipeline/playout.cpp
    src/pipeline/session.cpp
    src/pipeline/session-interruptions.cpp
    src/pipeline/session-reply.cpp
    src/pipeline/session-store.cpp
    src/pipeline/session-directory.cpp
    src/pipeline/slot-queue.cpp
    src/pipeline/session-turn-taking.cpp
    src/pipeline/turn-record.cpp
    src/core/log.cpp
    src/core/actor.cpp
    src/core/worker.cpp
    src/core/metrics.cpp
    src/core/base64.cpp
    src/core/onnx.cpp
    src/audio/g711.cpp
    src/audio/vad.cpp
    src/audio/echo-canceller.cpp
    src/llm/conversation.cpp
    src/asr/asr.cpp
    src/tts/tts.cpp
    src/text/phrase-chunker.cpp
    src/text/subtitles.cpp)
target_compile_options(parley_fuzz_session PRIVATE -fsanitize=fuzzer-no-link)
target_link_libraries(parley_fuzz_session PUBLIC parley_fuzz_parsers PkgConfig::ONNXRUNTIME
    ${WEBRTC_AUDIO_PROCESSING_LINK_LIBRARIES} Threads::Threads)

add_executable(fuzz-realtime tests/fuzz/fuzz-realtime.cpp)
target_link_libraries(fuzz-realtime PRIVATE parley_fuzz_session)
target_compile_options(fuzz-realtime PRIVATE -fsanitize=fuzzer)
target_link_options(fuzz-realtime PRIVATE -fsanitize=fuzzer)

foreach(name protocol audio manifest config http multipart tools)
    add_executable(fuzz-${name} tests/fuzz/fuzz-${name}.cpp)
    target_link_libraries(fuzz-${name} PRIVATE parley_fuzz_parsers)
    target_compile_options(fuzz-${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz-${name} PRIVATE -fsanitize=fuzzer)
endforeach()
