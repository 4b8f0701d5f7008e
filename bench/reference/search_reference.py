#!/usr/bin/python3
"""Reference for bench/search: a grid of heads and learning rates run the
usual way, one training run per trial, each computing its frozen backbone's
features again (eval mode, no grad, Resize(256)+CenterCrop(224), batch 32,
2 loader workers: what bench/reference/finetune_expert.py does for one run),
then training its head on them (Adam, batch 32, shuffled) and keeping the best
validation accuracy. All trials run in one process (no interpreter start-up
counted). Prints per trial "trial_<i>_seconds" and "trial_<i>_best_val_accuracy",
then "wall_seconds" and "trials"."""
import argparse
import os
import time

import torch
import torchvision
from torchvision import datasets, transforms

from finetune_expert import features  # the expert's feature pass, once per trial here

FEATURES = {"mobilenet_v2": 1280, "squeezenet1_1": 512}


def head(in_features, hidden, dropout):
    layers, n = [], in_features
    for units in hidden:
        if dropout:
            layers.append(torch.nn.Dropout(dropout))
        layers += [torch.nn.Linear(n, units), torch.nn.ReLU()]
        n = units
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    layers.append(torch.nn.Linear(n, 2))
    return torch.nn.Sequential(*layers)


def trial(backbone, lr, hidden, dropout, a, tf):
    model = getattr(torchvision.models, backbone)()
    model.load_state_dict(torch.load(os.path.join(a.weights, backbone + "-imagenet.pth")))
    model.eval()
    cached = {}
    for split in ["train", "val"]:
        ds = datasets.ImageFolder(os.path.join(a.data, split), tf)
        cached[split] = features(model, torch.utils.data.DataLoader(ds, batch_size=32, num_workers=2))
    net = head(FEATURES[backbone], hidden, dropout)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt, yt = cached["train"]
    xv, yv = cached["val"]
    best = 0.0
    for _ in range(a.epochs):
        net.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            best = max(best, (net(xv).argmax(1) == yv).float().mean().item())
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True, help="directory of <backbone>-imagenet.pth")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--backbones", default="mobilenet_v2,squeezenet1_1")
    p.add_argument("--lrs", default="1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1")
    p.add_argument("--per_backbone", type=int, default=0, help="run only the first N trials of each backbone (0: all)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    heads = [([], 0.0), ([256], 0.2), ([512, 128], 0.3)]
    start = time.perf_counter()
    n = 0
    for backbone in a.backbones.split(","):
        grid = [(float(lr), h, d) for lr in a.lrs.split(",") for h, d in heads]
        if a.per_backbone:
            grid = grid[:a.per_backbone]
        for lr, hidden, dropout in grid:
            t = time.perf_counter()
            best = trial(backbone, lr, hidden, dropout, a, tf)
            n += 1
            print(f"trial_{n}_backbone_{backbone}_seconds: {time.perf_counter() - t:.2f}")
            print(f"trial_{n}_best_val_accuracy: {best:.4f}", flush=True)
    print(f"wall_seconds: {time.perf_counter() - start:.2f}")
    print(f"trials: {n}")


if __name__ == "__main__":
    main()
