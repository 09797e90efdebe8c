# Audio-LLM: libmtmd from llama.cpp turns speech into the language model's input.
# Debian's llama package config names no mtmd target, so find the library next to libllama.
find_library(MTMD_LIBRARY mtmd REQUIRED HINTS ${LLAMA_LIB_DIR})
find_path(MTMD_INCLUDE_DIR mtmd.h REQUIRED HINTS ${LLAMA_INCLUDE_DIR})
target_sources(parley_core PRIVATE src/asr/asr-audio-llm.cpp)
target_include_directories(parley_core PRIVATE ${MTMD_INCLUDE_DIR})
target_link_libraries(parley_core PRIVATE ${MTMD_LIBRARY})
if(BUILD_TESTING)
    target_sources(parley_unit_tests PRIVATE tests/unit/test-audio-llm.cpp)
endif()
