# Benchmarks: `parley bench engines` (Parley's engines against the bare tools
# on the same inputs; bench/engines.sh makes the realistic-shape models first) and `parley bench`
# (simulated WebSocket clients against a real server, with an HTML report).
target_sources(parley_core PRIVATE
    src/bench/bench-util.cpp src/bench/bench-report.cpp src/bench/engine-bench.cpp
    src/bench/voice-bench.cpp)
if(BUILD_TESTING)
    target_sources(parley_unit_tests PRIVATE tests/unit/test-bench-report.cpp)
endif()
