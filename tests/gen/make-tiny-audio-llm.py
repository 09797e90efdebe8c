#!/usr/bin/env python3
"""Writes a tiny audio-LLM pair with random weights: a llama text model and its audio projector.

    python3 tests/gen/make-tiny-audio-llm.py TOKENIZER.gguf OUT_DIR

TOKENIZER.gguf is any llama GGUF whose tokenizer the text model borrows (the tests use
stories260K). OUT_DIR gets:

    text.gguf              llama architecture, 2 layers, width 64, the borrowed tokenizer
    mmproj-ultravox.gguf   Ultravox-style projector: a Whisper encoder ("a.*" tensors) and the
                           Ultravox MLP (RMS norms, SwiGLU), projector type "ultravox"
    mmproj-voxtral.gguf    the same encoder with Voxtral's GELU MLP, projector type "voxtral"
    mmproj-wide.gguf       an Ultravox projector whose output (96) does not match the text model
    mmproj-no-audio.gguf   a projector file that declares no audio encoder

The key names and tensor names are those libmtmd's clip loader reads (clip.projector_type,
clip.has_audio_encoder, clip.audio.*; a.conv1d.N, a.position_embd, a.blk.N.*, mm.a.*), with
the shapes its Whisper-encoder graph expects: 80 mel bins, 1500 positions (30 s of audio), and
stack factors that give 150 audio tokens per 30 s chunk. The widths are tiny and the weights
random, so the model's words are nonsense; the tests check the pipeline.
"""
import os
import sys

import numpy as np
import gguf

N_EMBD_TEXT = 64
N_MEL = 80
N_POS = 1500  # Whisper's 30 s window after the stride-2 convolution
A_EMBD, A_FF, A_HEAD, A_LAYERS = 32, 64, 2, 1


def borrowed_tokenizer(path):
    r = gguf.GGUFReader(path)

    def field(name):
        f = r.fields[name]
        return f, [f.parts[i] for i in f.data]

    _, tokens = field("tokenizer.ggml.tokens")
    _, scores = field("tokenizer.ggml.scores")
    _, types = field("tokenizer.ggml.token_type")
    ids = {}
    for key in ("bos", "eos", "unknown"):
        name = f"tokenizer.ggml.{key}_token_id"
        if name in r.fields:
            ids[key] = int(field(name)[1][0][0])
    return ([bytes(t).decode("utf-8") for t in tokens], [float(s[0]) for s in scores],
            [int(t[0]) for t in types], ids)


def write_text_model(path, tokenizer, rng):
    tokens, scores, types, ids = tokenizer
    n_vocab, n_ff, n_head, n_layers = len(tokens), 128, 4, 2

    def weight(*shape):
        return rng.normal(0.0, 0.02, shape).astype(np.float32)

    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny audio-llm text model (random weights)")
    w.add_context_length(2048)
    w.add_embedding_length(N_EMBD_TEXT)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layers)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(N_EMBD_TEXT // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(ids.get("bos", 1))
    w.add_eos_token_id(ids.get("eos", 2))
    w.add_unk_token_id(ids.get("unknown", 0))
    # numpy shapes are (rows, columns); GGUF stores them innermost first, as ggml's ne.
    w.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD_TEXT))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD_TEXT, dtype=np.float32))
    w.add_tensor("output.weight", weight(n_vocab, N_EMBD_TEXT))
    for i in range(n_layers):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", np.ones(N_EMBD_TEXT, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"{p}.{name}.weight", weight(N_EMBD_TEXT, N_EMBD_TEXT))
        w.add_tensor(f"{p}.ffn_norm.weight", np.ones(N_EMBD_TEXT, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_gate.weight", weight(n_ff, N_EMBD_TEXT))
        w.add_tensor(f"{p}.ffn_up.weight", weight(n_ff, N_EMBD_TEXT))
        w.add_tensor(f"{p}.ffn_down.weight", weight(N_EMBD_TEXT, n_ff))
    finish(w)


def write_projector(path, kind, rng, n_out=N_EMBD_TEXT, has_audio=True):
    def weight(*shape, dtype=np.float32):
        return rng.normal(0.0, 0.05, shape).astype(dtype)

    def ones(n):
        return np.ones(n, dtype=np.float32)

    def zeros(*shape):
        return np.zeros(shape, dtype=np.float32)

    # Whisper's 1500 positions must split evenly into output tokens: libmtmd aborts when its
    # token count (rounded down) and its graph's (padded up) differ. 150 tokens per 30 s each.
    stack = 10 if kind == "ultravox" else 5
    w = gguf.GGUFWriter(path, "clip")
    w.add_name(f"tiny {kind} audio projector (random weights)")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_string("clip.projector_type", kind)
    w.add_bool("clip.has_vision_encoder", False)
    w.add_bool("clip.has_audio_encoder", has_audio)
    w.add_uint32("clip.audio.embedding_length", A_EMBD)
    w.add_uint32("clip.audio.feed_forward_length", A_FF)
    w.add_uint32("clip.audio.block_count", A_LAYERS)
    w.add_uint32("clip.audio.attention.head_count", A_HEAD)
    w.add_float32("clip.audio.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("clip.audio.projection_dim", n_out)
    w.add_uint32("clip.audio.num_mel_bins", N_MEL)
    w.add_uint32("clip.audio.projector.stack_factor", stack)
    w.add_bool("clip.use_gelu", True)

    # Whisper encoder. Convolution kernels are f16 as the real converter writes them (ggml's
    # im2col path); conv biases are (channels, 1) so they broadcast over time.
    w.add_tensor("a.conv1d.1.weight", weight(A_EMBD, N_MEL, 3, dtype=np.float16))
    w.add_tensor("a.conv1d.1.bias", zeros(A_EMBD, 1))
    w.add_tensor("a.conv1d.2.weight", weight(A_EMBD, A_EMBD, 3, dtype=np.float16))
    w.add_tensor("a.conv1d.2.bias", zeros(A_EMBD, 1))
    w.add_tensor("a.position_embd.weight", weight(N_POS, A_EMBD))
    for i in range(A_LAYERS):
        p = f"a.blk.{i}"
        w.add_tensor(f"{p}.ln1.weight", ones(A_EMBD))
        w.add_tensor(f"{p}.ln1.bias", zeros(A_EMBD))
        w.add_tensor(f"{p}.attn_q.weight", weight(A_EMBD, A_EMBD))
        w.add_tensor(f"{p}.attn_q.bias", zeros(A_EMBD))
        w.add_tensor(f"{p}.attn_k.weight", weight(A_EMBD, A_EMBD))  # Whisper: no key bias
        w.add_tensor(f"{p}.attn_v.weight", weight(A_EMBD, A_EMBD))
        w.add_tensor(f"{p}.attn_v.bias", zeros(A_EMBD))
        w.add_tensor(f"{p}.attn_out.weight", weight(A_EMBD, A_EMBD))
        w.add_tensor(f"{p}.attn_out.bias", zeros(A_EMBD))
        w.add_tensor(f"{p}.ln2.weight", ones(A_EMBD))
        w.add_tensor(f"{p}.ln2.bias", zeros(A_EMBD))
        w.add_tensor(f"{p}.ffn_up.weight", weight(A_FF, A_EMBD))
        w.add_tensor(f"{p}.ffn_up.bias", zeros(A_FF))
        w.add_tensor(f"{p}.ffn_down.weight", weight(A_EMBD, A_FF))
        w.add_tensor(f"{p}.ffn_down.bias", zeros(A_EMBD))
    w.add_tensor("a.post_ln.weight", ones(A_EMBD))
    w.add_tensor("a.post_ln.bias", zeros(A_EMBD))

    # Projector: frames are stacked `stack` at a time, then an MLP maps them to the text width.
    stacked, hidden = A_EMBD * stack, 2 * n_out
    if kind == "ultravox":
        w.add_tensor("mm.a.norm_pre.weight", ones(stacked))
        w.add_tensor("mm.a.mlp.1.weight", weight(2 * hidden, stacked))  # SwiGLU halves it
        w.add_tensor("mm.a.norm_mid.weight", ones(hidden))
        w.add_tensor("mm.a.mlp.2.weight", weight(n_out, hidden))
    else:
        w.add_tensor("mm.a.mlp.1.weight", weight(hidden, stacked))
        w.add_tensor("mm.a.mlp.2.weight", weight(n_out, hidden))
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tokenizer_path, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    write_text_model(os.path.join(out, "text.gguf"), borrowed_tokenizer(tokenizer_path), rng)
    write_projector(os.path.join(out, "mmproj-ultravox.gguf"), "ultravox", rng)
    write_projector(os.path.join(out, "mmproj-voxtral.gguf"), "voxtral", rng)
    write_projector(os.path.join(out, "mmproj-wide.gguf"), "ultravox", rng, n_out=96)
    write_projector(os.path.join(out, "mmproj-no-audio.gguf"), "ultravox", rng, has_audio=False)


if __name__ == "__main__":
    main()
