#!/usr/bin/python3
"""Reference for bench/backbone_forward: torchvision eager forward, eval mode,
torch.no_grad(), default (contiguous) memory format, as a hand-written
PyTorch inference loop runs it; with --autocast_bf16 under
torch.autocast('cpu', dtype=torch.bfloat16), as PyTorch's CPU mixed-precision
recipe does; with --int8 FX graph-mode static post-training quantization on
the onednn engine (per-channel weights, conv+BN+ReLU fused, calibrated on
the random input), as PyTorch's quantization tutorial does. Prints one JSON object {"<arch>/<batch>": images_per_second}."""
import argparse
import json
import time

import torch
import torchvision


def measure(model, batch, size, min_seconds, min_iters, autocast):
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        model(x)  # warm-up
        iters, start = 0, time.perf_counter()
        while iters < min_iters or time.perf_counter() - start < min_seconds:
            model(x)
            iters += 1
        elapsed = time.perf_counter() - start
    return batch * iters / elapsed


def quantize_fx(model, batch, size):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "onednn"
    x = torch.randn(batch, 3, size, size)
    prepared = prepare_fx(model, get_default_qconfig_mapping("onednn"), (x,))
    with torch.no_grad():
        prepared(x)
    return convert_fx(prepared)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--min_seconds", type=float, default=3.0)
    p.add_argument("--min_iters", type=int, default=3)
    p.add_argument("--archs", default="resnet18,mobilenet_v2")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument("--autocast_bf16", action="store_true")
    p.add_argument("--int8", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {}
    for arch in a.archs.split(","):
        model = getattr(torchvision.models, arch)(weights=None).eval()
        for b in (int(s) for s in a.batches.split(",")):
            m = quantize_fx(model, b, a.input_size) if a.int8 else model
            out[f"{arch}/{b}"] = measure(m, b, a.input_size, a.min_seconds, a.min_iters, a.autocast_bf16)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
