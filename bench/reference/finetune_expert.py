#!/usr/bin/python3
"""Reference for bench/finetune_vs_pytorch: what an expert writes by hand for
the same job. The frozen MobileNetV2 runs once per image (eval mode, no grad,
Resize(256)+CenterCrop(224), batch 32, 2 loader workers), its pooled features
are kept in memory, and a Linear head trains 25 epochs on them (Adam 1e-3,
batch 32, shuffled), keeping the best validation accuracy.
Prints "wall_seconds: S" and "best_val_accuracy: A"."""
import argparse
import os
import time

import torch
import torchvision
from torchvision import datasets, transforms


def features(model, loader):
    xs, ys = [], []
    with torch.no_grad():
        for inputs, labels in loader:
            f = model.features(inputs)
            xs.append(torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1))
            ys.append(labels)
    return torch.cat(xs), torch.cat(ys)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    start = time.perf_counter()
    torch.manual_seed(a.seed)
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(a.weights))
    model.eval()
    cached = {}
    for split in ["train", "val"]:
        ds = datasets.ImageFolder(os.path.join(a.data, split), tf)
        cached[split] = features(model, torch.utils.data.DataLoader(ds, batch_size=32, num_workers=2))
    head = torch.nn.Linear(1280, 2)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    xt, yt = cached["train"]
    xv, yv = cached["val"]
    best = 0.0
    for _ in range(a.epochs):
        head.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            best = max(best, (head(xv).argmax(1) == yv).float().mean().item())
    print(f"wall_seconds: {time.perf_counter() - start:.2f}")
    print(f"best_val_accuracy: {best:.4f}")


if __name__ == "__main__":
    main()
