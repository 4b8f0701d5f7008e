"""Writes the TorchScript backbones the custom-backbone tests register.

usage: make_torchscript.py OUT_DIR WEIGHTS_DIR
  mnv2_features.pt  torchvision mobilenet_v2 .features with the real ImageNet
                    weights, traced: [N, 3, H, W] -> [N, 1280, H/32, W/32]
  tiny_pooled.pt    a scripted 2-conv net: [N, 3, H, W] -> [N, 16]
  returns_tuple.pt  a scripted net whose forward returns a tuple
"""
import os
import sys

import torch
import torchvision

out, weights = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

m = torchvision.models.mobilenet_v2()
m.load_state_dict(torch.load(os.path.join(weights, "mobilenet_v2-imagenet.pth")))
features = m.features.eval()
traced = torch.jit.trace(features, torch.zeros(1, 3, 224, 224))
traced.save(os.path.join(out, "mnv2_features.pt"))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):
        return torch.relu(self.b(torch.relu(self.a(x)))).mean(dim=(2, 3))


class Pair(torch.nn.Module):
    def forward(self, x):
        return x, x


torch.jit.script(Tiny().eval()).save(os.path.join(out, "tiny_pooled.pt"))
torch.jit.script(Pair()).save(os.path.join(out, "returns_tuple.pt"))
print("wrote", sorted(os.listdir(out)))
