#!/usr/bin/python3
"""Writes <out>/<arch>-shapes.txt for each torchvision architecture: the
parameter count on the first line, then every state-dict entry as
"name dim,dim,..." ("-" for a scalar; no weights: the largest variants are checked by names and
shapes only)."""
import sys

import torch

from torchvision_models import build


def main():
    out, archs = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(2)
    for arch in archs:
        model = build(arch, aux_logits=False)
        with open(f"{out}/{arch}-shapes.txt", "w") as f:
            f.write(f"{sum(p.numel() for p in model.parameters())}\n")
            for name, t in model.state_dict().items():
                f.write(f"{name} {','.join(str(d) for d in t.shape) or '-'}\n")


if __name__ == "__main__":
    main()
