#!/usr/bin/env python3
"""Writes a tiny Whisper model in whisper.cpp's ggml file format, with random weights.

    python3 tests/gen/make-tiny-whisper.py OUT.bin
    python3 tests/gen/make-tiny-whisper.py --preset base.en OUT.bin   # real base.en dimensions

The layout is the one whisper.cpp's loader reads (all little-endian):

    u32 magic 0x67676d6c ("ggml")
    i32 hparams: n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
                 n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
    i32 n_mel, i32 n_fft; f32[n_mel * n_fft] mel filter bank
    i32 n_tokens; n_tokens x (i32 length, bytes) vocabulary (the loader names the rest)
    tensors until the end of the file:
        i32 n_dims, i32 name length, i32 type (0 f32, 1 f16); i32 ne[n_dims] (innermost first);
        name; data

Tensor names and shapes are those of OpenAI's checkpoints. The shapes are real Whisper's with
small widths: n_audio_ctx stays 1500 (30 s) and n_vocab the English-only 51864, the smallest
vocabulary whose special tokens (end of text at 50256, start at 50257, ...) whisper.cpp can
address. The weights are random, so the transcript is nonsense; the tests check the pipeline.

`--preset base.en` writes OpenAI's base.en dimensions instead (512 wide, 6 + 6 layers, 8 heads,
74M parameters, 140 MiB in f16 as whisper.cpp's ggml-base.en.bin): the compute of the real
model, for benchmarks. A random decoder would rarely emit end of text and would write until its
token limit, which differs between callers; so this one is rigged to write TEXT_TOKENS (16, what
a few seconds of speech takes) nonsense tokens and then end of text, whatever the audio. Every
caller then decodes the same number of tokens.
"""
import argparse
import struct
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from ggml_file import mel_filter_bank, write_tensor  # noqa: E402

HPARAMS = dict(n_vocab=51864, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2,
               n_audio_layer=1, n_text_ctx=448, n_text_state=64, n_text_head=2,
               n_text_layer=1, n_mels=80)
PRESETS = {
    "tiny-test": HPARAMS,
    "base.en": dict(HPARAMS, n_audio_state=512, n_audio_head=8, n_audio_layer=6,
                    n_text_state=512, n_text_head=8, n_text_layer=6),
}
TEXT_TOKENS = 16
EOT = 50256


def rig_end_of_text(items, n_text_tokens):
    """Makes end of text the decoder's choice from position 1 + n_text_tokens on (after the
    prompt <|startoftranscript|><|notimestamps|> and n_text_tokens tokens), and rarely before.
    Dimension 0 of the text state carries it: only end of text's embedding has a component
    there (the output matrix is the embedding), and from that position on the positional
    embedding puts a large value there, which dominates every layer norm that follows."""
    d = dict(items)
    emb = d["decoder.token_embedding.weight"]
    emb[:, 0] = 0.0
    emb[EOT, 0] = 1.0
    pos = d["decoder.positional_embedding"]
    pos[:, 0] = 0.0
    pos[1 + n_text_tokens:, 0] = 100.0
    return items
FTYPE_F16 = 1
N_TEXT_TOKENS = 50256  # ordinary tokens; ids from 50256 on are special


def vocabulary():
    """The 256 single-byte tokens first (as GPT-2's byte-level BPE has them: a random model can
    emit half a UTF-8 character), then made-up word pieces up to the special tokens."""
    tokens = [bytes([b]) for b in range(256)]
    onsets = ["", "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "n", "s", "t", "r", "l", "m"]
    pieces = [o + v + c for o in onsets for v in vowels for c in codas]
    n = 0
    while len(tokens) < N_TEXT_TOKENS:
        a, b = divmod(n, len(pieces))
        word = pieces[b] if a == 0 else pieces[a % len(pieces)] + pieces[b]
        tokens.append((" " + word if n % 2 == 0 else word).encode())
        n += 1
    return tokens


def tensors(rng, h):
    def weight(*shape):
        return rng.normal(0.0, 0.05, shape).astype(np.float32)

    def ones(n):
        return np.ones(n, dtype=np.float32)

    def zeros(*shape):
        return np.zeros(shape, dtype=np.float32)

    a, t = h["n_audio_state"], h["n_text_state"]
    out = [
        ("encoder.positional_embedding", weight(h["n_audio_ctx"], a)),
        ("encoder.conv1.weight", weight(a, h["n_mels"], 3)),
        ("encoder.conv1.bias", zeros(a, 1)),
        ("encoder.conv2.weight", weight(a, a, 3)),
        ("encoder.conv2.bias", zeros(a, 1)),
    ]

    def attention(prefix, s):
        items = [(f"{prefix}.query.weight", weight(s, s)), (f"{prefix}.query.bias", zeros(s)),
                 (f"{prefix}.key.weight", weight(s, s)),
                 (f"{prefix}.value.weight", weight(s, s)), (f"{prefix}.value.bias", zeros(s)),
                 (f"{prefix}.out.weight", weight(s, s)), (f"{prefix}.out.bias", zeros(s))]
        return items

    def mlp(prefix, s):
        return [(f"{prefix}.mlp_ln.weight", ones(s)), (f"{prefix}.mlp_ln.bias", zeros(s)),
                (f"{prefix}.mlp.0.weight", weight(4 * s, s)), (f"{prefix}.mlp.0.bias", zeros(4 * s)),
                (f"{prefix}.mlp.2.weight", weight(s, 4 * s)), (f"{prefix}.mlp.2.bias", zeros(s))]

    for i in range(h["n_audio_layer"]):
        p = f"encoder.blocks.{i}"
        out += [(f"{p}.attn_ln.weight", ones(a)), (f"{p}.attn_ln.bias", zeros(a))]
        out += attention(f"{p}.attn", a) + mlp(p, a)
    out += [("encoder.ln_post.weight", ones(a)), ("encoder.ln_post.bias", zeros(a))]

    out += [("decoder.positional_embedding", weight(h["n_text_ctx"], t)),
            ("decoder.token_embedding.weight", weight(h["n_vocab"], t))]
    for i in range(h["n_text_layer"]):
        p = f"decoder.blocks.{i}"
        out += [(f"{p}.attn_ln.weight", ones(t)), (f"{p}.attn_ln.bias", zeros(t))]
        out += attention(f"{p}.attn", t)
        out += [(f"{p}.cross_attn_ln.weight", ones(t)), (f"{p}.cross_attn_ln.bias", zeros(t))]
        out += attention(f"{p}.cross_attn", t) + mlp(p, t)
    out += [("decoder.ln.weight", ones(t)), ("decoder.ln.bias", zeros(t))]
    return out


def stored_as_f32(name, data):
    # As OpenAI's converter: vectors, conv biases and positional embeddings stay f32.
    return data.ndim < 2 or name.endswith("conv1.bias") or name.endswith("conv2.bias") \
        or name.endswith("positional_embedding")


def write(path, h=HPARAMS):
    rng = np.random.default_rng(20240503)
    with open(path, "wb") as f:
        f.write(struct.pack("<I", 0x67676D6C))
        for key in ["n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                    "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels"]:
            f.write(struct.pack("<i", h[key]))
        f.write(struct.pack("<i", FTYPE_F16))

        bank = mel_filter_bank(h["n_mels"])
        f.write(struct.pack("<ii", *bank.shape))
        f.write(bank.astype("<f4").tobytes())

        tokens = vocabulary()
        f.write(struct.pack("<i", len(tokens)))
        for tok in tokens:
            f.write(struct.pack("<i", len(tok)))
            f.write(tok)

        items = tensors(rng, h)
        if h is not HPARAMS:
            items = rig_end_of_text(items, TEXT_TOKENS)
        for name, data in items:
            write_tensor(f, name, data, f16=not stored_as_f32(name, data))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(usage="make-tiny-whisper.py [--preset NAME] OUT.bin")
    parser.add_argument("out")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny-test")
    args = parser.parse_args()
    write(args.out, PRESETS[args.preset])
