"""Recomputes a checkpoint's logits in numpy and compares them with the ones tch computed.

Usage: interop_numpy.py CHECKPOINT_DIR CASE_JSON

CASE_JSON holds {"tokens": [[...]], "logits": [[[...]]], "tolerance": 1e-4}. The network is read
from config.json and model.safetensors alone (embedding -> GRU with PyTorch's equations and gate
order r, z, n -> linear head), using only numpy, safetensors and json. Exits 0 and prints
"max abs diff ..." when every logit is within the tolerance, else exits 1.
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gru_layer(x, h, w_ih, w_hh, b_ih, b_hh):
    """x: [batch, time, in], h: [batch, hidden] -> outputs [batch, time, hidden], last h."""
    hidden = h.shape[1]
    outs = []
    for t in range(x.shape[1]):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        i_r, i_z, i_n = gi[:, :hidden], gi[:, hidden:2 * hidden], gi[:, 2 * hidden:]
        h_r, h_z, h_n = gh[:, :hidden], gh[:, hidden:2 * hidden], gh[:, 2 * hidden:]
        r = sigmoid(i_r + h_r)
        z = sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        h = (1.0 - z) * n + z * h
        outs.append(h)
    return np.stack(outs, axis=1), h


def logits(ckpt, tokens):
    config = json.loads((ckpt / "config.json").read_text())
    model = config["model"]
    w = {k: v.astype(np.float64) for k, v in load_file(str(ckpt / "model.safetensors")).items()}
    expected = {"embed.weight", "head.bias"}
    for layer in range(model["num_layers"]):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            expected.add(f"gru.{name}_l{layer}")
    if not model["tie_weights"]:
        expected.add("head.weight")
    if set(w) != expected:
        raise SystemExit(f"parameter names {sorted(w)} differ from {sorted(expected)}")
    embed = w["embed.weight"]
    if embed.shape != (model["vocab_size"], model["embed_dim"]):
        raise SystemExit(f"embed.weight has shape {embed.shape}")
    x = embed[tokens]
    h0 = np.zeros((tokens.shape[0], model["hidden_size"]))
    for layer in range(model["num_layers"]):
        x, _ = gru_layer(x, h0, w[f"gru.weight_ih_l{layer}"], w[f"gru.weight_hh_l{layer}"],
                         w[f"gru.bias_ih_l{layer}"], w[f"gru.bias_hh_l{layer}"])
    head_w = embed if model["tie_weights"] else w["head.weight"]
    return x @ head_w.T + w["head.bias"]


def main():
    ckpt, case_path = Path(sys.argv[1]), Path(sys.argv[2])
    case = json.loads(case_path.read_text())
    tokens = np.array(case["tokens"], dtype=np.int64)
    want = np.array(case["logits"], dtype=np.float64)
    got = logits(ckpt, tokens)
    if got.shape != want.shape:
        print(f"shape {got.shape} differs from tch's {want.shape}")
        return 1
    diff = float(np.max(np.abs(got - want)))
    tol = float(case.get("tolerance", 1e-4))
    print(f"max abs diff {diff:.3e} (tolerance {tol:.0e}) over {want.size} logits")
    return 0 if diff <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
