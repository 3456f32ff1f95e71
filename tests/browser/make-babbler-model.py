"""Derives a "babbler" model from a trained model folder: its output head can no longer pick
the markers that end an output or a cell, so once a cell's stdout starts the kernel keeps
generating until --max-output-tokens. The browser tests use it to interrupt a long generation.

    python make-babbler-model.py SRC_MODEL_DIR OUT_DIR

Needs numpy and safetensors (both in the test venv). Writes config.json with the new weights'
sha256, as the kernel checks it.
"""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

# Markers that would stop or switch an output (see src/sequence.rs); <|stdout|> stays allowed.
BLOCKED = ["<|notebook|>", "<|markdown|>", "<|raw|>", "<|code|>", "<|stderr|>", "<|result|>",
           "<|error|>", "<|display|>", "<|end|>", "<|truncated|>"]


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(buf):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            value, i = varint(buf, i)
        elif wt == 1:
            value, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wt == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, value


def pieces(model_proto):
    """The pieces of a SentencePiece ModelProto, in id order (field 1, each with piece = 1)."""
    out = []
    for num, wt, value in fields(model_proto):
        if num == 1 and wt == 2:
            out.append(next(v for n, _, v in fields(value) if n == 1).decode())
    return out


def main(src, dst):
    src, dst = Path(src), Path(dst)
    ids = {p: i for i, p in enumerate(pieces((src / "tokenizer.model").read_bytes()))}
    missing = [m for m in BLOCKED if m not in ids]
    if missing:
        sys.exit(f"markers missing from the tokenizer: {missing}")
    weights = load_file(str(src / "model.safetensors"))
    bias = weights["head.bias"].copy()
    bias[[ids[m] for m in BLOCKED]] = -1e4
    weights["head.bias"] = bias
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(src / "tokenizer.model", tmp / "tokenizer.model")
    save_file(weights, str(tmp / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


if __name__ == "__main__":
    main(*sys.argv[1:3])
