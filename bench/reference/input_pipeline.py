#!/usr/bin/python3
"""Reference for bench/input_pipeline: the same epochs as a PyTorch user writes
them — torchvision ImageFolder + transforms, DataLoader(num_workers=cores),
the eager frozen forward under no_grad and a Linear head trained with SGD.
epoch1: Resize(256) + CenterCrop(224) (feature extraction); augmented: plus
RandomHorizontalFlip. Prints one JSON object {"epoch1": img/s, "augmented": img/s}."""
import argparse
import json
import time

import torch
import torchvision
from torchvision import transforms


def epoch(root, arch, augmented, workers):
    steps = [transforms.Resize(256), transforms.CenterCrop(224)]
    if augmented:
        steps.insert(0, transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    data = torchvision.datasets.ImageFolder(root, transforms.Compose(steps))
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, num_workers=workers,
                                         persistent_workers=False)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    trunk = model.features
    head = torch.nn.Linear(model.classifier[-1].in_features, 2)
    opt = torch.optim.SGD(head.parameters(), lr=1e-3, momentum=0.9)
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        with torch.no_grad():
            f = torch.nn.functional.adaptive_avg_pool2d(trunk(x), 1).flatten(1)
        loss = torch.nn.functional.cross_entropy(head(f), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += x.shape[0]
    return seen / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(json.dumps({"epoch1": epoch(a.root, a.arch, False, a.workers),
                      "augmented": epoch(a.root, a.arch, True, a.workers)}))


if __name__ == "__main__":
    main()
