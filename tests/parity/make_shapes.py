#!/usr/bin/python3
"""Writes <out>/<arch>-shapes.txt for each torchvision architecture: the
parameter count on the first line, then every state-dict entry as
"name dim,dim,..." ("-" for a scalar; no weights: the largest variants are checked by names and
shapes only)."""
import sys

import torch
import torchvision


def build(arch):
    """torchvision's model as its published weights run it: Inception-v3 and
    GoogLeNet with transform_input (and, for parity, the auxiliary heads whose
    weights the published files carry)."""
    if arch in ("inception_v3", "googlenet"):
        return getattr(torchvision.models, arch)(weights=None, aux_logits=False, transform_input=True, init_weights=True)
    return getattr(torchvision.models, arch)(weights=None)


def main():
    out, archs = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(2)
    for arch in archs:
        model = build(arch)
        with open(f"{out}/{arch}-shapes.txt", "w") as f:
            f.write(f"{sum(p.numel() for p in model.parameters())}\n")
            for name, t in model.state_dict().items():
                f.write(f"{name} {','.join(str(d) for d in t.shape) or '-'}\n")


if __name__ == "__main__":
    main()
