#!/usr/bin/env python3
"""Writes two tiny Piper voices in Piper's real file format, for tests of the Piper engine.

    python3 make-tiny-piper.py OUT_DIR

OUT_DIR/tiny-piper.onnx (+ .onnx.json): one speaker.
OUT_DIR/tiny-piper-multi.onnx (+ .onnx.json): three speakers, with the `sid` input.

The graphs have the inputs and output of a Piper (VITS) export, with the same names, types and
dynamic axes: `input` int64 [1, phonemes], `input_lengths` int64 [1], `scales` float [3]
(noise_scale, length_scale, noise_w), `sid` int64 [1] (multi-speaker only) and `output` float
[1, 1, 1, samples]. Inside is not VITS but a small model of the same shape of computation, with
random weights: phoneme embeddings (+ a speaker embedding), a duration per phoneme scaled by
length_scale and masked by input_lengths, expansion of phonemes to frames with a monotonic
alignment path (as VITS does), noise scaled by noise_scale, and 256 samples per frame (Piper's
hop length). It makes noise, not speech. noise_w is accepted and unused (there is no stochastic
duration predictor here). The .onnx.json has Piper's keys and Piper's default phoneme_id_map,
which covers every symbol espeak-ng produces for English.

    python3 make-tiny-piper.py --preset medium OUT_DIR

OUT_DIR/medium-piper.onnx (+ .onnx.json): a voice with the compute of a Piper "medium" voice
where it matters. Its decoder is a HiFi-GAN generator of Piper's medium configuration
(conv_pre 192 -> 256 channels, upsampling 8 x 8 x 4 with kernels 16, 16, 8 to 128, 64, 32
channels, after each three resblock-2 stacks with kernels 3, 5, 7 and dilations (1, 2), (2, 6),
(3, 12), conv_post, tanh: about 23M multiply-adds per frame), fed 192-channel frames, about
3.5 per phoneme id (Piper puts a pad id between phonemes, so about 7 per phoneme: 86 frames a
second, speech at a normal pace), random weights. Before it, a residual stack of the
flow's size (16 gated WaveNet layers at 192 channels, about 6.5M per frame; VITS's flow has 4
coupling layers of 4). The text encoder (6 transformer layers, run per phoneme, not per frame)
and the stochastic duration predictor are still the tiny model's, so a real medium voice
takes a little longer than this one (a few percent, by multiply-adds).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HOP = 256
DIM = 16
NUM_SYMBOLS = 256
SAMPLE_RATE = 22050

# Piper's default phoneme id map (piper-phonemize DEFAULT_PHONEME_ID_MAP), in id order.
PHONEMES = (
    ["_", "^", "$", " ", "!", "'", "(", ")", ",", "-", ".", ":", ";", "?"]
    + list("abcdefhijklmnopqrstuvwxyz")
    + list("æçðøħŋœǀǁǂǃɐɑɒɓɔɕɖɗɘəɚɛɜɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢʲˈˌːˑ˞βθχᵻⱱ")
    + list("0123456789")
    + ["\u0327", "\u0303", "\u032a", "\u032f", "\u0329", "ʰ", "ˤ", "ε", "↓", "#", '"', "↑"]
    + ["\u033a", "\u033b", "g", "ʦ", "X", "\u031d", "\u030a"]
)
assert len(PHONEMES) == 159 and len(set(PHONEMES)) == 159


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


# Piper's "medium" HiFi-GAN generator (resblock "2").
MEDIUM = dict(dim=192, upsample_initial_channel=256, upsample_rates=(8, 8, 4),
              upsample_kernel_sizes=(16, 16, 8), resblock_kernel_sizes=(3, 5, 7),
              resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)), flow_layers=16)


def hifigan_nodes(rng, inits, x, dim):
    """Nodes of a HiFi-GAN generator from x [1, dim, T] to "audio" [1, 1, T * 256]."""
    nodes = []
    counter = [0]

    def conv(inp, c_in, c_out, k, dilation=1, transpose=False, stride=1):
        counter[0] += 1
        n = counter[0]
        fan_in = c_in * k
        if transpose:
            w = rng.normal(0, 1.0 / np.sqrt(c_in * k / stride), (c_in, c_out, k))
            pad = (k - stride) // 2
            nodes.append(helper.make_node(
                "ConvTranspose", [inp, f"dec_w{n}", f"dec_b{n}"], [f"dec_c{n}"], kernel_shape=[k],
                strides=[stride], pads=[pad, pad]))
        else:
            w = rng.normal(0, 1.0 / np.sqrt(fan_in), (c_out, c_in, k))
            pad = dilation * (k - 1) // 2
            nodes.append(helper.make_node(
                "Conv", [inp, f"dec_w{n}", f"dec_b{n}"], [f"dec_c{n}"], kernel_shape=[k],
                dilations=[dilation], pads=[pad, pad]))
        inits.append(const(f"dec_w{n}", w.astype(np.float32)))
        inits.append(const(f"dec_b{n}", np.zeros(c_out, dtype=np.float32)))
        return f"dec_c{n}"

    def leaky(inp, slope=0.1):
        counter[0] += 1
        out = f"dec_l{counter[0]}"
        nodes.append(helper.make_node("LeakyRelu", [inp], [out], alpha=slope))
        return out

    def add(a, b):
        counter[0] += 1
        out = f"dec_a{counter[0]}"
        nodes.append(helper.make_node("Add", [a, b], [out]))
        return out

    def op(kind, *inputs):
        counter[0] += 1
        out = f"dec_{kind.lower()}{counter[0]}"
        nodes.append(helper.make_node(kind, list(inputs), [out]))
        return out

    # The flow's compute: 4 coupling layers of 4 WaveNet layers each at 192 channels (a gated
    # kernel-5 convolution and a 1x1 convolution, as VITS's WN; the coupling's split in halves
    # is left out, so this is a residual stack of the same size).
    for _ in range(MEDIUM["flow_layers"]):
        g = op("Mul", op("Tanh", conv(x, dim, dim, 5)), op("Sigmoid", conv(x, dim, dim, 5)))
        x = add(x, conv(g, dim, dim, 1))

    ch = MEDIUM["upsample_initial_channel"]
    h = conv(x, dim, ch, 7)
    for u, k in zip(MEDIUM["upsample_rates"], MEDIUM["upsample_kernel_sizes"]):
        h = conv(leaky(h), ch, ch // 2, k, transpose=True, stride=u)
        ch //= 2
        branches = []
        for rk, dilations in zip(MEDIUM["resblock_kernel_sizes"],
                                 MEDIUM["resblock_dilation_sizes"]):
            r = h
            for d in dilations:
                r = add(conv(leaky(r), ch, ch, rk, dilation=d), r)
            branches.append(r)
        s = add(add(branches[0], branches[1]), branches[2])
        counter[0] += 1
        h = f"dec_avg{counter[0]}"
        nodes.append(helper.make_node("Mul", [s, "third"], [h]))
    post = conv(leaky(h, 0.01), ch, 1, 7)
    nodes.append(helper.make_node("Tanh", [post], ["audio"]))
    inits.append(const("third", np.float32(1.0 / 3.0)))
    return nodes


def build_graph(num_speakers, seed, preset="tiny"):
    rng = np.random.default_rng(seed)
    multi = num_speakers > 1
    medium = preset == "medium"
    dim = MEDIUM["dim"] if medium else DIM
    inits = [
        const("emb", rng.normal(0, 1, (NUM_SYMBOLS, dim)).astype(np.float32)),
        const("w_dur", rng.normal(0, 0.3 * np.sqrt(DIM / dim), (dim,)).astype(np.float32)),
        const("b_dur", np.float32(1.0)),
        const("frames_per_unit", np.float32(2.0 if medium else 3.0)),
        const("w_audio", rng.normal(0, 0.5, (DIM, HOP)).astype(np.float32)),
        const("audio_gain", np.float32(0.5)),
        const("i0", np.int64(0)),
        const("i1", np.int64(1)),
        const("f0", np.float32(0.0)),
        const("f1", np.float32(1.0)),
        const("axis0", np.array([0], dtype=np.int64)),
        const("axis1", np.array([1], dtype=np.int64)),
        const("out_shape", np.array([1, 1, 1, -1], dtype=np.int64)),
    ]
    nodes = [
        # phoneme ids -> embeddings [n, DIM]
        helper.make_node("Gather", ["emb", "input"], ["x3"], axis=0),
        helper.make_node("Squeeze", ["x3", "axis0"], ["x"]),
    ]
    if multi:
        inits.append(const("spk_emb", rng.normal(0, 1, (num_speakers, dim)).astype(np.float32)))
        nodes += [
            helper.make_node("Gather", ["spk_emb", "sid"], ["g"], axis=0),  # [1, DIM]
            helper.make_node("Add", ["x", "g"], ["h"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["x"], ["h"]))
    nodes += [
        # mask of the first input_lengths phonemes
        helper.make_node("Shape", ["input"], ["in_shape"]),
        helper.make_node("Gather", ["in_shape", "i1"], ["n"], axis=0),
        helper.make_node("Range", ["i0", "n", "i1"], ["pos"]),
        helper.make_node("Gather", ["input_lengths", "i0"], ["len"], axis=0),
        helper.make_node("Less", ["pos", "len"], ["mask_b"]),
        helper.make_node("Cast", ["mask_b"], ["mask"], to=TensorProto.FLOAT),
        # frames per phoneme: ceil(softplus(h . w + b) * 3 * length_scale), masked
        helper.make_node("Gather", ["scales", "i0"], ["noise_scale"], axis=0),
        helper.make_node("Gather", ["scales", "i1"], ["length_scale"], axis=0),
        helper.make_node("MatMul", ["h", "w_dur"], ["logw"]),
        helper.make_node("Add", ["logw", "b_dur"], ["logw_b"]),
        helper.make_node("Softplus", ["logw_b"], ["w"]),
        helper.make_node("Mul", ["w", "frames_per_unit"], ["w3"]),
        helper.make_node("Mul", ["w3", "length_scale"], ["w_scaled"]),
        helper.make_node("Ceil", ["w_scaled"], ["dur_c"]),
        helper.make_node("Max", ["dur_c", "f1"], ["dur_m"]),
        helper.make_node("Mul", ["dur_m", "mask"], ["dur"]),
        # alignment path: frame t belongs to phoneme i when start_i <= t < end_i
        helper.make_node("CumSum", ["dur", "i0"], ["end"]),
        helper.make_node("Sub", ["end", "dur"], ["start"]),
        helper.make_node("ReduceSum", ["dur"], ["total"], keepdims=0),
        helper.make_node("Range", ["f0", "total", "f1"], ["t"]),
        helper.make_node("Unsqueeze", ["t", "axis1"], ["t_col"]),  # [T, 1]
        helper.make_node("GreaterOrEqual", ["t_col", "start"], ["after_start"]),
        helper.make_node("Less", ["t_col", "end"], ["before_end"]),
        helper.make_node("And", ["after_start", "before_end"], ["path_b"]),
        helper.make_node("Cast", ["path_b"], ["path"], to=TensorProto.FLOAT),  # [T, n]
        helper.make_node("MatMul", ["path", "h"], ["frames"]),  # [T, DIM]
        # noise, as VITS samples z with noise_scale
        helper.make_node("RandomNormalLike", ["frames"], ["eps"], seed=float(seed)),
        helper.make_node("Mul", ["eps", "noise_scale"], ["eps_s"]),
        helper.make_node("Add", ["frames", "eps_s"], ["z"]),
    ]
    if medium:
        # [T, dim] -> [1, dim, T] -> HiFi-GAN -> [1, 1, T * HOP]
        nodes += [helper.make_node("Transpose", ["z"], ["z_t"], perm=[1, 0]),
                  helper.make_node("Unsqueeze", ["z_t", "axis0"], ["z_b"])]
        nodes += hifigan_nodes(rng, inits, "z_b", dim)
        nodes.append(helper.make_node("Mul", ["audio", "audio_gain"], ["audio_g"]))
        nodes.append(helper.make_node("Reshape", ["audio_g", "out_shape"], ["output"]))
    else:
        nodes += [
            # decoder: HOP samples per frame
            helper.make_node("MatMul", ["z", "w_audio"], ["hop"]),  # [T, HOP]
            helper.make_node("Tanh", ["hop"], ["hop_t"]),
            helper.make_node("Mul", ["hop_t", "audio_gain"], ["hop_g"]),
            helper.make_node("Reshape", ["hop_g", "out_shape"], ["output"]),
        ]
    inputs = [
        helper.make_tensor_value_info("input", TensorProto.INT64, ["batch_size", "phonemes"]),
        helper.make_tensor_value_info("input_lengths", TensorProto.INT64, ["batch_size"]),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
    ]
    if multi:
        inputs.append(helper.make_tensor_value_info("sid", TensorProto.INT64, ["batch_size"]))
    outputs = [
        helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, ["batch_size", 1, 1, "time"]
        )
    ]
    graph = helper.make_graph(nodes, "tiny_piper", inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="parley-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def build_config(speakers, preset="tiny"):
    return {
        "dataset": "tiny-piper" if preset == "tiny" else preset + "-piper",
        "audio": {"sample_rate": SAMPLE_RATE, "quality": "x_low" if preset == "tiny" else preset},
        "espeak": {"voice": "en-us"},
        "language": {"code": "en_US"},
        "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_map": {},
        "phoneme_id_map": {p: [i] for i, p in enumerate(PHONEMES)},
        "num_symbols": NUM_SYMBOLS,
        "num_speakers": max(1, len(speakers)),
        "speaker_id_map": {name: i for i, name in enumerate(speakers)},
        "piper_version": "1.0.0",
    }


def write_voice(out_dir, name, speakers, seed, preset="tiny"):
    model = build_graph(max(1, len(speakers)), seed, preset)
    path = os.path.join(out_dir, name + ".onnx")
    onnx.save(model, path)
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump(build_config(speakers, preset), f, ensure_ascii=False, indent=2)
    return path


def main():
    parser = argparse.ArgumentParser(usage="make-tiny-piper.py [--preset medium] OUT_DIR")
    parser.add_argument("out_dir")
    parser.add_argument("--preset", choices=["tiny", "medium"], default="tiny")
    args = parser.parse_args()
    out_dir = args.out_dir
    os.makedirs(out_dir, exist_ok=True)
    if args.preset == "medium":
        t0 = time.time()
        path = write_voice(out_dir, "medium-piper", [], seed=3, preset="medium")
        print(f"{path}: {os.path.getsize(path) / 2**20:.1f} MiB in {time.time() - t0:.1f} s")
        return
    write_voice(out_dir, "tiny-piper", [], seed=1)
    write_voice(out_dir, "tiny-piper-multi", ["alice", "bob", "carol"], seed=2)


if __name__ == "__main__":
    main()
