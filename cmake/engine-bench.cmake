# (owned by the engine-bench work; included from CMakeLists.txt)
