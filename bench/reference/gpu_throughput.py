#!/usr/bin/python3
"""Reference for bench/gpu_throughput: torchvision models in eager PyTorch on
one device, as a hand-written loop runs them. Inference: eval, no_grad, batch
copied from pinned memory, torch.autocast(float16) when mixed. Training: whole
network, SGD(0.01, momentum 0.9), torch.autocast(bfloat16) when mixed.
Prints one JSON object {"<arch>/<infer|train>_<fp32|mixed>": images_per_second}."""
import argparse
import contextlib
import json
import time

import torch
import torchvision


def autocast(enabled, dtype):
    # torch 1.13 checks bfloat16 support even for a disabled CUDA autocast.
    return torch.autocast("cuda", dtype=dtype) if enabled else contextlib.nullcontext()


def rate(device, batch, min_seconds, step):
    for _ in range(3):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    iters, start, elapsed = 0, time.perf_counter(), 0.0
    while iters < 5 or elapsed < min_seconds:
        step()
        iters += 1
        if iters % 5 == 0:
            sync()
            elapsed = time.perf_counter() - start
    return batch * iters / elapsed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--archs", default="resnet50,mobilenet_v2")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train_batch", type=int, default=32)
    p.add_argument("--min_seconds", type=float, default=3.0)
    a = p.parse_args()
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    out = {}
    for arch in a.archs.split(","):
        for mixed in (False, True):
            suffix = "mixed" if mixed else "fp32"
            amp = mixed and cuda
            model = getattr(torchvision.models, arch)(weights=None).to(device).eval()
            host = torch.randn(a.batch, 3, 224, 224)
            if cuda:
                host = host.pin_memory()

            def infer():
                with torch.no_grad(), autocast(amp, torch.float16):
                    model(host.to(device, non_blocking=True))

            out[f"{arch}/infer_{suffix}"] = rate(device, a.batch, a.min_seconds, infer)
            model = getattr(torchvision.models, arch)(weights=None).to(device).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            thost = torch.randn(a.train_batch, 3, 224, 224)
            if cuda:
                thost = thost.pin_memory()
            labels = torch.randint(0, 1000, (a.train_batch,), device=device)

            def train():
                with autocast(amp, torch.bfloat16):
                    logits = model(thost.to(device, non_blocking=True))
                loss = torch.nn.functional.cross_entropy(logits.float(), labels)
                opt.zero_grad()
                loss.backward()
                opt.step()

            out[f"{arch}/train_{suffix}"] = rate(device, a.train_batch, a.min_seconds, train)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
