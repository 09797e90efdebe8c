# Engine benchmark (issues #3 and #5): Parley's engines against the bare tools on the same
# inputs, `parley bench engines` (bench/engines.sh makes the realistic-shape models first).
target_sources(parley_core PRIVATE src/bench/engine-bench.cpp)
