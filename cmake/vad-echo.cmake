# Included from CMakeLists.txt: voice activity detection (Silero v5 on ONNX Runtime, energy
# fallback) and server-side echo cancellation (webrtc-audio-processing 1.x, AEC3).
if(NOT TARGET PkgConfig::ONNXRUNTIME)
    pkg_check_modules(ONNXRUNTIME REQUIRED IMPORTED_TARGET libonnxruntime)
endif()
# webrtc's headers and macros (WEBRTC_POSIX, NOMINMAX...) only for the one file that uses them.
pkg_check_modules(WEBRTC_AUDIO_PROCESSING REQUIRED webrtc-audio-processing-1)
set_source_files_properties(src/audio/echo-canceller.cpp PROPERTIES
    COMPILE_OPTIONS "${WEBRTC_AUDIO_PROCESSING_CFLAGS}")
target_sources(parley_core PRIVATE src/audio/vad.cpp src/audio/vad-params.cpp src/audio/echo-canceller.cpp)
target_link_libraries(parley_core PRIVATE
    PkgConfig::ONNXRUNTIME ${WEBRTC_AUDIO_PROCESSING_LINK_LIBRARIES})

if(BUILD_TESTING)
    target_sources(parley_unit_tests PRIVATE tests/unit/test-vad.cpp tests/unit/test-echo.cpp)
endif()
