# (owned by the audio-llm work; included from CMakeLists.txt)
