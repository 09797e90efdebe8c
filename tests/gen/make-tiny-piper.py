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
"""
import json
import os
import sys

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


def build_graph(num_speakers, seed):
    rng = np.random.default_rng(seed)
    multi = num_speakers > 1
    inits = [
        const("emb", rng.normal(0, 1, (NUM_SYMBOLS, DIM)).astype(np.float32)),
        const("w_dur", rng.normal(0, 0.3, (DIM,)).astype(np.float32)),
        const("b_dur", np.float32(1.0)),
        const("frames_per_unit", np.float32(3.0)),
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
        inits.append(const("spk_emb", rng.normal(0, 1, (num_speakers, DIM)).astype(np.float32)))
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


def build_config(speakers):
    return {
        "dataset": "tiny-piper",
        "audio": {"sample_rate": SAMPLE_RATE, "quality": "x_low"},
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


def write_voice(out_dir, name, speakers, seed):
    model = build_graph(max(1, len(speakers)), seed)
    path = os.path.join(out_dir, name + ".onnx")
    onnx.save(model, path)
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump(build_config(speakers), f, ensure_ascii=False, indent=2)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-tiny-piper.py OUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    write_voice(out_dir, "tiny-piper", [], seed=1)
    write_voice(out_dir, "tiny-piper-multi", ["alice", "bob", "carol"], seed=2)


if __name__ == "__main__":
    main()
