#!/usr/bin/python3
"""Writes <out>/<arch>-shapes.txt for each torchvision architecture: the
parameter count on the first line, then every state-dict entry as
"name dim,dim,..." ("-" for a scalar; no weights: the largest variants are checked by names and
shapes only)."""
import sys

import torch
import torch.nn.init


def _leave(tensor, *args, **kwargs):
    return tensor


# Only names and shapes are read: no initialiser needs to fill the weights
# (filling the largest variants' billions of values was most of this test's
# time). Replaced before torchvision is imported, so no module keeps the
# original functions under its own name.
for _name in dir(torch.nn.init):
    if _name.endswith("_") and not _name.startswith("_"):
        setattr(torch.nn.init, _name, _leave)

from torchvision_models import build  # noqa: E402


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
