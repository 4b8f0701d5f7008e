#!/usr/bin/python3
"""Loads a graft model export into torchvision and checks its predictions.

usage: check_export.py EXPORT.safetensors IO.safetensors ARCH
IO holds "input" (preprocessed images) and "probs" (graft's probabilities for
them). Exits 0 when torchvision, loading the export strictly, gives the same
classes and probabilities within 1e-4.
"""
import json
import struct
import sys

import numpy as np
import torch
import torchvision

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def main():
    export, io_path, arch = sys.argv[1], sys.argv[2], sys.argv[3]
    weights, meta = load_safetensors(export)
    info = json.loads(meta["graft.model"])
    classes = len(info["class_names"])
    model = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    model.load_state_dict(weights, strict=True)
    model.eval()
    io, _ = load_safetensors(io_path)
    with torch.no_grad():
        probs = torch.softmax(model(io["input"]), 1)
    expected = io["probs"]
    err = (probs - expected).abs().max().item()
    same = bool((probs.argmax(1) == expected.argmax(1)).all())
    print(f"classes {info['class_names']}, max |p_torchvision - p_graft| = {err:.2e}, same top-1: {same}")
    sys.exit(0 if same and err < 1e-4 else 1)


if __name__ == "__main__":
    main()
