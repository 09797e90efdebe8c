#!/usr/bin/env python3
"""Writes a tiny Parakeet TDT model in libparakeet's ggml file format, with random weights.

    python3 tests/gen/make-tiny-parakeet.py OUT.bin

The layout is the one libparakeet's loader reads (all little-endian):

    u32 magic 0x67676d6c ("ggml")
    i32 hparams: n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_mels, ftype,
                 n_fft, subsampling_factor, n_subsampling_channels, n_conv_kernel, n_pred_dim,
                 n_pred_layers, n_tdt_durations, n_max_tokens
    i32 n_mel, i32 n_freqs; f32[n_mel * n_freqs] mel filter bank
    i32 n_window; f32[n_window] STFT window
    u32[n_tdt_durations] the durations (frames to advance)
    i32 n_tokens; n_tokens x (i32 length, bytes) SentencePiece vocabulary (blank is n_vocab)
    tensors until the end of the file, as whisper.cpp's (see ggml_file.write_tensor)

Names are NeMo's FastConformer-TDT state-dict names; shapes are parakeet-tdt-0.6b-v3's
(128 mels, 512-point FFT, 8x depthwise-striding subsampling, kernel-9 convolution module, LSTM
prediction network, durations 0-4, 8192 SentencePiece tokens, as v3) with small widths. As NeMo's
converter does, the LSTM's input bias is folded into the hidden bias (bias_h) and the gates are
stored in the order i, f, o, g.
"""
import struct
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from ggml_file import mel_filter_bank, write_tensor  # noqa: E402

HPARAMS = dict(n_vocab=8192, n_audio_ctx=5000, n_audio_state=64, n_audio_head=2,
               n_audio_layer=1, n_mels=128, ftype=1, n_fft=512, subsampling_factor=8,
               n_subsampling_channels=8, n_conv_kernel=9, n_pred_dim=64, n_pred_layers=1,
               n_tdt_durations=5, n_max_tokens=10)
HPARAM_ORDER = ["n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                "n_mels", "ftype", "n_fft", "subsampling_factor", "n_subsampling_channels",
                "n_conv_kernel", "n_pred_dim", "n_pred_layers", "n_tdt_durations", "n_max_tokens"]
WINDOW_LENGTH = 400  # 25 ms Hann window, as NeMo's featurizer


def vocabulary(n):
    """<unk> first, as SentencePiece; then word-initial (U+2581) and inner pieces."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    tokens = ["<unk>"] + list(letters) + ["\u2581" + c for c in letters]
    i = 0
    while len(tokens) < n:
        a, b = divmod(i, len(letters))
        piece = letters[a % len(letters)] + letters[b] + letters[(a + b) % len(letters)]
        tokens.append(("\u2581" + piece) if i % 3 == 0 else piece)
        i += 1
    return [t.encode() for t in tokens[:n]]


def tensors(rng, h):
    def weight(*shape):
        return rng.normal(0.0, 0.1, shape).astype(np.float32)

    def ones(n):
        return np.ones(n, dtype=np.float32)

    def zeros(*shape):
        return np.zeros(shape, dtype=np.float32)

    s, heads, ch = h["n_audio_state"], h["n_audio_head"], h["n_subsampling_channels"]
    pred, vocab = h["n_pred_dim"], h["n_vocab"]
    pre = "encoder.pre_encode"
    # Three stride-2 stages: a full 3x3 conv, then twice depthwise 3x3 + pointwise 1x1.
    out = [(f"{pre}.conv.0.weight", weight(ch, 1, 3, 3)), (f"{pre}.conv.0.bias", zeros(1, ch, 1, 1)),
           (f"{pre}.conv.2.weight", weight(ch, 1, 3, 3)), (f"{pre}.conv.2.bias", zeros(1, ch, 1, 1)),
           (f"{pre}.conv.3.weight", weight(ch, ch, 1, 1)), (f"{pre}.conv.3.bias", zeros(1, ch, 1, 1)),
           (f"{pre}.conv.5.weight", weight(ch, 1, 3, 3)), (f"{pre}.conv.5.bias", zeros(1, ch, 1, 1)),
           (f"{pre}.conv.6.weight", weight(ch, ch, 1, 1)), (f"{pre}.conv.6.bias", zeros(1, ch, 1, 1)),
           (f"{pre}.out.weight", weight(s, ch * (h["n_mels"] // h["subsampling_factor"]))),
           (f"{pre}.out.bias", zeros(s))]

    for i in range(h["n_audio_layer"]):
        p = f"encoder.layers.{i}"
        for ff in ("feed_forward1", "feed_forward2"):
            out += [(f"{p}.norm_{ff}.weight", ones(s)), (f"{p}.norm_{ff}.bias", zeros(s)),
                    (f"{p}.{ff}.linear1.weight", weight(4 * s, s)),
                    (f"{p}.{ff}.linear2.weight", weight(s, 4 * s))]
        out += [(f"{p}.norm_conv.weight", ones(s)), (f"{p}.norm_conv.bias", zeros(s)),
                (f"{p}.conv.pointwise_conv1.weight", weight(2 * s, s)),
                (f"{p}.conv.depthwise_conv.weight", weight(s, h["n_conv_kernel"])),
                (f"{p}.conv.batch_norm.weight", ones(s)), (f"{p}.conv.batch_norm.bias", zeros(s)),
                (f"{p}.conv.batch_norm.running_mean", zeros(s)),
                (f"{p}.conv.batch_norm.running_var", ones(s)),
                # a scalar in NeMo's checkpoints; stored as a 0-d tensor
                (f"{p}.conv.batch_norm.num_batches_tracked", np.zeros((), dtype=np.float32)),
                (f"{p}.conv.pointwise_conv2.weight", weight(s, s))]
        out += [(f"{p}.norm_self_att.weight", ones(s)), (f"{p}.norm_self_att.bias", zeros(s)),
                (f"{p}.self_attn.pos_bias_u", weight(heads, s // heads)),
                (f"{p}.self_attn.pos_bias_v", weight(heads, s // heads))]
        for proj in ("q", "k", "v", "out", "pos"):
            out.append((f"{p}.self_attn.linear_{proj}.weight", weight(s, s)))
        out += [(f"{p}.norm_out.weight", ones(s)), (f"{p}.norm_out.bias", zeros(s))]

    # Prediction network: embedding of the previous token (or blank), then the LSTM.
    out.append(("decoder.prediction.embed.weight", weight(vocab + 1, pred)))
    for i in range(h["n_pred_layers"]):
        lstm = "decoder.prediction.dec_rnn.lstm"
        out += [(f"{lstm}.weight_ih_l{i}", weight(4 * pred, pred)),
                (f"{lstm}.weight_hh_l{i}", weight(4 * pred, pred)),
                (f"{lstm}.bias_h_l{i}", zeros(4 * pred))]

    # Joint network: tokens, blank, then the duration logits.
    out += [("joint.pred.weight", weight(pred, pred)), ("joint.pred.bias", zeros(pred)),
            ("joint.enc.weight", weight(pred, s)), ("joint.enc.bias", zeros(pred)),
            ("joint.joint_net.2.weight", weight(vocab + 1 + h["n_tdt_durations"], pred)),
            ("joint.joint_net.2.bias", zeros(vocab + 1 + h["n_tdt_durations"]))]
    return out


def stored_as_f32(name, data):
    # As NeMo's converter: vectors, biases, norms, the subsampling convolutions and the
    # depthwise convolution stay f32.
    return data.ndim < 2 or "bias" in name or "norm" in name or \
        ("pre_encode.conv" in name and data.ndim == 4) or "depthwise_conv.weight" in name


def write(path):
    rng = np.random.default_rng(20240504)
    h = HPARAMS
    with open(path, "wb") as f:
        f.write(struct.pack("<I", 0x67676D6C))
        for key in HPARAM_ORDER:
            f.write(struct.pack("<i", h[key]))

        bank = mel_filter_bank(h["n_mels"], n_fft=h["n_fft"])
        f.write(struct.pack("<ii", *bank.shape))
        f.write(bank.astype("<f4").tobytes())

        window = np.hanning(WINDOW_LENGTH + 1)[:-1]  # periodic, as torch.hann_window
        f.write(struct.pack("<i", len(window)))
        f.write(window.astype("<f4").tobytes())

        f.write(struct.pack(f"<{h['n_tdt_durations']}I", *range(h["n_tdt_durations"])))

        tokens = vocabulary(h["n_vocab"])
        f.write(struct.pack("<i", len(tokens)))
        for tok in tokens:
            f.write(struct.pack("<i", len(tok)))
            f.write(tok)

        for name, data in tensors(rng, h):
            write_tensor(f, name, data, f16=h["ftype"] == 1 and not stored_as_f32(name, data))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make-tiny-parakeet.py OUT.bin")
    write(sys.argv[1])
