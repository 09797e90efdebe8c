# (owned by the vad-echo work; included from CMakeLists.txt)
