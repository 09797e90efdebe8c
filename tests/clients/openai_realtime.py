"""Parley's Realtime API through Debian's python3-openai (with python3-websockets), unchanged.

usage: python3 tests/clients/openai_realtime.py BASE_URL API_KEY CLIP.wav
One push-to-talk turn: the clip (24 kHz PCM by sox) appended, committed, a response asked for.
Prints one JSON object with the transcript, the reply and its audio; exits 1 on an error event.
"""
import base64
import json
import subprocess
import sys

from openai import OpenAI

base_url, api_key, clip = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
pcm = subprocess.run(["sox", clip, "-t", "raw", "-e", "signed", "-b", "16", "-c", "1",
                      "-r", "24000", "-"], check=True, capture_output=True).stdout
out = {"events": [], "transcript": None, "reply": "", "audio_bytes": 0}
with client.realtime.connect(model="parley-local") as conn:
    conn.session.update(session={"type": "realtime", "instructions": "You tell stories.",
                                 "audio": {"input": {"turn_detection": None}}})
    frame = 24000 * 2 // 50
    for i in range(0, len(pcm), frame):
        conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + frame]).decode())
    conn.input_audio_buffer.commit()
    conn.response.create()
    for event in conn:
        out["events"].append(event.type)
        if event.type == "error":
            print(json.dumps({"error": event.error.model_dump()}))
            sys.exit(1)
        if event.type == "conversation.item.input_audio_transcription.completed":
            out["transcript"] = event.transcript
        elif event.type == "response.output_audio_transcript.delta":
            out["reply"] += event.delta
        elif event.type == "response.output_audio.delta":
            out["audio_bytes"] += len(base64.b64decode(event.delta))
        elif event.type == "response.done":
            out["status"] = event.response.status
            break
print(json.dumps(out))
