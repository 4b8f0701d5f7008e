#!/usr/bin/python3
"""Writes random-weight torchvision models for graft's parity tests.

For each architecture: <out>/<arch>.pth (torch.save of the state dict, the
same container torchvision publishes) and <out>/<arch>-io.safetensors holding
the input batch and torchvision's eval-mode logits for it.
"""
import json
import struct
import sys

import torch

from torchvision_models import build


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def randomize_batchnorm(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def main():
    out, size = sys.argv[1], int(sys.argv[2])
    archs = sys.argv[3:]
    torch.set_num_threads(2)
    for i, arch in enumerate(archs):
        torch.manual_seed(1234 + i)
        gen = torch.Generator().manual_seed(99 + i)
        model = build(arch, aux_logits=True)
        randomize_batchnorm(model, gen)
        model.eval()
        torch.save(model.state_dict(), f"{out}/{arch}.pth")
        side = 224 if arch.startswith("vit_") else size  # ViT's position embedding is for 224x224
        x = torch.randn(2, 3, side, side, generator=gen)
        with torch.no_grad():
            y = model(x)
        save_safetensors(f"{out}/{arch}-io.safetensors", {"input": x, "logits": y})
        print(f"{arch}: {sum(p.numel() for p in model.parameters())} parameters", flush=True)


if __name__ == "__main__":
    main()
