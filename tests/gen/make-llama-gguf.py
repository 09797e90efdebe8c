#!/usr/bin/env python3
"""Writes a llama-architecture GGUF with the real shapes of a common voice-chat model and
random weights, for benchmarks (the text it writes is nonsense; the compute is real).

    python3 tests/gen/make-llama-gguf.py --preset 0.5b OUT.gguf
    python3 tests/gen/make-llama-gguf.py --preset 1.5b --type q4_k_m OUT.gguf

Presets (Qwen2.5's dimensions in llama.cpp's llama architecture; Qwen2's q/k/v biases are left
out, they are a rounding error of the compute):

    tiny  2 layers, 64 embd (for tests of the generator itself)
    0.5b  24 layers, 896 embd, 4864 ffn, 14 heads, 2 kv heads (head dim 64)
    1.5b  28 layers, 1536 embd, 8960 ffn, 12 heads, 2 kv heads (head dim 128)
    3b    36 layers, 2048 embd, 11008 ffn, 16 heads, 2 kv heads (head dim 128)

The tokenizer is stories260K's (SentencePiece, 512 tokens, read from --tokenizer). Its 512
tokens would make the embedding and output matrices 300 times smaller than the real model's
151936 x embd, and the output matrix alone is a quarter of a 0.5B model's work per token, so by
default the vocabulary is padded to the real model's size with synthetic tokens: made-up words,
some ending a clause with a comma or a full stop (never produced by the tokenizer from ordinary
text, but sampled by the random weights, which costs the same, and which read as phrases; each
is a token the tokenizer makes from its own text, so a reply re-tokenizes into the same tokens).
`--vocab 0` keeps the 512 tokens. Qwen2.5 ties its output matrix to the embeddings; here it is a
separate random matrix of the same shape (the same work per token: the whole matrix is read for
every token either way; the file is larger by one embedding table). With random weights a tied
output matrix mostly predicts the input token again ("dishoti dishoti dishoti ..."); a separate
one gives varied words.

Weight types: q4_0 (default; 4.5 bits per weight, written directly), q8_0, f16, and q4_k_m (what
most people run on CPU: written as f16 to a temporary file, then `llama-quantize` makes
Q4_K_M). Random quantized blocks have one scale per tensor, chosen so a row's dot product with
a unit-RMS input has RMS about 1: activations stay finite through every layer.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

import gguf

PRESETS = {
    # A few MB with the real vocabulary: for tests of the padding's text, not for speed.
    "tiny": dict(n_layer=2, n_embd=64, n_ff=256, n_head=4, n_head_kv=2, vocab=151936),
    "0.5b": dict(n_layer=24, n_embd=896, n_ff=4864, n_head=14, n_head_kv=2, vocab=151936),
    "1.5b": dict(n_layer=28, n_embd=1536, n_ff=8960, n_head=12, n_head_kv=2, vocab=151936),
    "3b": dict(n_layer=36, n_embd=2048, n_ff=11008, n_head=16, n_head_kv=2, vocab=151936),
}
# stories260K: the test model (PARLEY_TEST_MODEL, as make test sets it), else beside the checkout.
DEFAULT_TOKENIZER = os.environ.get("PARLEY_TEST_MODEL") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "models",
    "stories260K.gguf")
Q = gguf.GGMLQuantizationType


def read_tokenizer(path):
    r = gguf.GGUFReader(path)

    def array(key):
        f = r.fields[key]
        return [f.parts[i] for i in f.data]

    tokens = [bytes(p).decode("utf-8") for p in array("tokenizer.ggml.tokens")]
    scores = [float(p[0]) for p in array("tokenizer.ggml.scores")]
    types = [int(p[0]) for p in array("tokenizer.ggml.token_type")]
    model = bytes(r.fields["tokenizer.ggml.model"].parts[-1]).decode()

    def scalar(key, default):
        f = r.fields.get(key)
        return int(f.parts[-1][0]) if f else default

    ids = dict(bos=scalar("tokenizer.ggml.bos_token_id", 1),
               eos=scalar("tokenizer.ggml.eos_token_id", 2),
               unk=scalar("tokenizer.ggml.unknown_token_id", 0))
    return model, tokens, scores, types, ids


def pad_words():
    """Pronounceable made-up words of two to four syllables ("▁tamiko"), in a fixed order."""
    onsets = "b d f g h k l m n p r s t v z ch sh".split()
    vowels = "a e i o u".split()
    syllables = [c + v for c in onsets for v in vowels]
    for n in (2, 3, 4):
        for idx in np.ndindex(*([len(syllables)] * n)):
            yield "\u2581" + "".join(syllables[j] for j in idx)


def spm_pieces(text, score):
    """The pieces llama.cpp's SentencePiece tokenizer ends with for one word: starting from its
    characters, it joins the adjacent pair whose text is in the vocabulary with the highest score
    (the leftmost on a tie) until no pair is."""
    syms = list(text)
    while True:
        best, at = None, -1
        for i in range(len(syms) - 1):
            s = score.get(syms[i] + syms[i + 1])
            if s is not None and (best is None or s > best):
                best, at = s, i
        if at < 0:
            return syms
        syms[at:at + 2] = [syms[at] + syms[at + 1]]


def pad_vocab(tokens, scores, types, n):
    """Pads the vocabulary with word-like tokens. Random weights sample these nearly all the
    time, so a reply reads as words with a clause break (a comma or a full stop) every sixth or
    so: the phrase chunker and the TTS then see text of a realistic shape (a first phrase of a few
    words), and the benchmark's time to first audio means what it would with real weights.

    Every added token is one the tokenizer itself makes from its text, as a real model's
    tokens are: a reply put back into the history then tokenizes into the very tokens that were
    generated and the next turn finds them in the KV cache. SentencePiece reaches a word only by
    joining pairs of pieces that are in the vocabulary, so each word comes with the chain of
    pieces that leads to it (its first pieces joined left to right: "▁tam", "▁tamik",
    which are words too). The added scores fall in the order added and lie below every real
    piece's, so ordinary text tokenizes as before and a later token never changes how an
    earlier one is reached."""
    tokens, scores, types = list(tokens), list(scores), list(types)
    score = {t: s for t, s in zip(tokens, scores)}
    next_score = min(scores) - 1.0
    clause_ends = 0
    added = 0

    def add(text):
        nonlocal next_score, added
        tokens.append(text)
        scores.append(next_score)
        types.append(gguf.TokenType.NORMAL)
        score[text] = next_score
        next_score -= 0.01  # distinct in float32 down to about -60000
        added += 1

    def reach(text):
        while len(tokens) < n:
            pieces = spm_pieces(text, score)
            if len(pieces) == 1:
                return True
            add(pieces[0] + pieces[1])
        return False

    for word in pad_words():
        if len(tokens) >= n:
            break
        if word in score:
            continue
        if not reach(word):
            break
        while clause_ends * 6 < added and len(tokens) < n:
            end = word + ("," if clause_ends % 2 == 0 else ".")
            clause_ends += 1
            if not reach(end):
                break
    return tokens, scores, types


class blocks:
    """Random quantized rows of one tensor, made a slab of rows at a time."""

    def __init__(self, qtype, rng):
        self.qtype, self.rng = qtype, rng

    def make(self, rows, cols, std):
        if self.qtype == Q.F16:
            return (self.rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(np.float16)
        nb = cols // 32
        if self.qtype == Q.Q8_0:
            # value = d * q, q uniform in [-127, 127]: RMS 73.3
            d = np.float16(std / 73.3)
            out = np.empty((rows, nb, 34), dtype=np.uint8)
            out[:, :, 0:2] = np.frombuffer(d.tobytes(), dtype=np.uint8)
            out[:, :, 2:] = self.rng.integers(-127, 128, (rows, nb, 32), dtype=np.int8).view(np.uint8)
            return out.reshape(rows, nb * 34)
        if self.qtype == Q.Q4_0:
            # value = d * (nibble - 8): RMS 4.6
            d = np.float16(std / 4.6)
            out = np.empty((rows, nb, 18), dtype=np.uint8)
            out[:, :, 0:2] = np.frombuffer(d.tobytes(), dtype=np.uint8)
            out[:, :, 2:] = self.rng.integers(0, 256, (rows, nb, 16), dtype=np.uint8)
            return out.reshape(rows, nb * 18)
        raise ValueError(self.qtype)

    def zero_rows(self, slab, n):
        """Rows [0, n) of a made slab become exact zeros."""
        if self.qtype == Q.F16:
            slab[:n] = 0
        elif self.qtype == Q.Q8_0:
            slab[:n].reshape(n, -1, 34)[:, :, 2:] = 0
        else:  # Q4_0: nibble 8 is 0
            slab[:n].reshape(n, -1, 18)[:, :, 2:] = 0x88


def tensor_plan(h, vocab):
    """(name, rows, cols, std) per tensor; cols is the inner dimension (ggml ne0)."""
    e, f = h["n_embd"], h["n_ff"]
    hd = e // h["n_head"]
    kv = hd * h["n_head_kv"]
    plan = [("token_embd.weight", vocab, e, 1.0)]
    for i in range(h["n_layer"]):
        p = f"blk.{i}"
        plan += [(f"{p}.attn_norm.weight", 0, e, 0), (f"{p}.ffn_norm.weight", 0, e, 0),
                 (f"{p}.attn_q.weight", e, e, e ** -0.5), (f"{p}.attn_k.weight", kv, e, e ** -0.5),
                 (f"{p}.attn_v.weight", kv, e, e ** -0.5),
                 # residual branches scaled down so the residual stream grows slowly
                 (f"{p}.attn_output.weight", e, e, 0.5 * e ** -0.5),
                 (f"{p}.ffn_gate.weight", f, e, e ** -0.5), (f"{p}.ffn_up.weight", f, e, e ** -0.5),
                 (f"{p}.ffn_down.weight", e, f, 0.5 * f ** -0.5)]
    plan.append(("output_norm.weight", 0, e, 0))
    plan.append(("output.weight", vocab, e, e ** -0.5))  # logits of RMS about 1
    return plan


def write(path, h, vocab_arg, qtype, tokenizer_path, seed, name):
    model, tokens, scores, types, ids = read_tokenizer(tokenizer_path)
    n_base = len(tokens)
    vocab = len(tokens) if vocab_arg == 0 else max(vocab_arg, len(tokens))
    tokens, scores, types = pad_vocab(tokens, scores, types, vocab)
    e = h["n_embd"]
    hd = e // h["n_head"]

    w = gguf.GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_context_length(32768)
    w.add_embedding_length(e)
    w.add_feed_forward_length(h["n_ff"])
    w.add_block_count(h["n_layer"])
    w.add_head_count(h["n_head"])
    w.add_head_count_kv(h["n_head_kv"])
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type({Q.F16: 1, Q.Q4_0: 2, Q.Q8_0: 7}[qtype])
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(ids["bos"])
    w.add_eos_token_id(ids["eos"])
    w.add_unk_token_id(ids["unk"])

    plan = tensor_plan(h, vocab)
    bytes_per_row = {Q.F16: lambda c: 2 * c, Q.Q8_0: lambda c: c // 32 * 34,
                     Q.Q4_0: lambda c: c // 32 * 18}[qtype]
    for tname, rows, cols, _ in plan:
        if rows == 0:
            w.add_tensor_info(tname, [cols], np.dtype(np.float32), 4 * cols)
        elif qtype == Q.F16:
            w.add_tensor_info(tname, [rows, cols], np.dtype(np.float16), 2 * rows * cols)
        else:
            w.add_tensor_info(tname, [rows, bytes_per_row(cols)], np.dtype(np.uint8),
                              rows * bytes_per_row(cols), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    rng = np.random.default_rng(seed)
    gen = blocks(qtype, rng)
    n_params = 0
    for tname, rows, cols, std in plan:
        if rows == 0:
            w.write_tensor_data(np.ones(cols, dtype=np.float32))
            n_params += cols
            continue
        slab = max(1, (64 << 20) // max(1, bytes_per_row(cols)))
        parts = [gen.make(min(slab, rows - r), cols, std) for r in range(0, rows, slab)]
        if tname == "output.weight" and vocab > n_base:
            # The tokenizer's own pieces get a logit of exactly 0, far below the top-k of 151k
            # random logits: a reply is made of padding words only. A piece such as "ing" after
            # a padding word would join it into a word the tokenizer splits differently, and the
            # reply in the history would no longer match the generated tokens (end of text is
            # one of these pieces too: replies run to their token limit).
            gen.zero_rows(parts[0], n_base)
        w.write_tensor_data(np.concatenate(parts) if len(parts) > 1 else parts[0])
        n_params += rows * cols
    w.close()
    return n_params, vocab


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="0.5b")
    ap.add_argument("--type", choices=["q4_0", "q8_0", "f16", "q4_k_m"], default="q4_0")
    ap.add_argument("--vocab", type=int, default=-1,
                    help="vocabulary size (default: the real model's; 0: the tokenizer's 512)")
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                    help="GGUF whose tokenizer to copy (default $PARLEY_TEST_MODEL, else "
                         "../shared/models/stories260K.gguf)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    h = PRESETS[args.preset]
    vocab = h["vocab"] if args.vocab < 0 else args.vocab
    t0 = time.time()
    name = f"parley-random-{args.preset}"
    if args.type == "q4_k_m":
        quantize = shutil.which("llama-quantize")
        if not quantize:
            sys.exit("--type q4_k_m needs llama-quantize on the PATH")
        tmp = args.out + ".f16.tmp"
        n_params, vocab = write(tmp, h, vocab, Q.F16, args.tokenizer, args.seed, name)
        try:
            subprocess.run([quantize, tmp, args.out, "Q4_K_M"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.remove(tmp)
    else:
        qtype = {"q4_0": Q.Q4_0, "q8_0": Q.Q8_0, "f16": Q.F16}[args.type]
        n_params, vocab = write(args.out, h, vocab, qtype, args.tokenizer, args.seed, name)
    size = os.path.getsize(args.out)
    print(f"{args.out}: {args.preset} llama, {n_params / 1e9:.2f}B parameters, vocab {vocab}, "
          f"{args.type}, {size / 2**20:.0f} MiB, written in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
