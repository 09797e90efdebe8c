"""Parley's OpenAI-compatible REST endpoints through Debian's python3-openai, unchanged.

usage: python3 tests/clients/openai_rest.py BASE_URL API_KEY CLIP.wav
Prints one JSON object with what each call returned; exits 1 on an unexpected error.
"""
import io
import json
import sys
import wave

import openai
from openai import OpenAI

base_url, api_key, clip = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
out = {"version": openai.__version__}

out["models"] = [m.id for m in client.models.list()]

ask = dict(model="parley", messages=[{"role": "user", "content": "Once upon a time"}],
           max_tokens=16, temperature=0)
whole = client.chat.completions.create(**ask)
out["chat"] = whole.choices[0].message.content
out["chat_usage"] = whole.usage.completion_tokens
out["chat_stream"] = "".join(
    c.choices[0].delta.content or ""
    for c in client.chat.completions.create(stream=True, **ask)
    if c.choices)

speech = client.audio.speech.create(model="tts-1", voice="nova", input="Good morning to you.",
                                    response_format="wav")
with wave.open(io.BytesIO(speech.read())) as w:
    out["speech_seconds"] = w.getnframes() / w.getframerate()

with open(clip, "rb") as f:
    out["transcript"] = client.audio.transcriptions.create(model="whisper-1", file=f).text
with open(clip, "rb") as f:
    timed = client.audio.transcriptions.create(model="whisper-1", file=f,
                                               response_format="verbose_json",
                                               timestamp_granularities=["word"])
    out["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in timed.words]
    out["words_text"] = timed.text

try:
    client.chat.completions.create(model="parley", messages=[])
    out["bad_request"] = None
except openai.BadRequestError as e:
    out["bad_request"] = {"status": e.status_code, "param": e.body.get("param")}

print(json.dumps(out))
