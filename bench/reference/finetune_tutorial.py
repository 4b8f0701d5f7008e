#!/usr/bin/python3
"""Reference for bench/finetune_vs_pytorch: the PyTorch transfer-learning
tutorial's "ConvNet as fixed feature extractor" loop, run as written, with
MobileNetV2 from ../shared/weights instead of ResNet-18: ImageFolder with
RandomResizedCrop(224)+RandomHorizontalFlip for train and Resize(256)+
CenterCrop(224) for val, batch 4, shuffle, 4 workers, every parameter frozen
but the new Linear, SGD lr 1e-3 momentum 0.9, StepLR(7, 0.1), 25 epochs,
model.train() during the train phase (so batch norm statistics drift), the
whole network forward on every image every epoch, best weights kept.
Prints "wall_seconds: S" and "best_val_accuracy: A"."""
import argparse
import copy
import os
import time

import torch
import torchvision
from torchvision import datasets, transforms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    start = time.perf_counter()
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    tf = {
        "train": transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                     transforms.ToTensor(), transforms.Normalize(mean, std)]),
        "val": transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)]),
    }
    image_datasets = {x: datasets.ImageFolder(os.path.join(a.data, x), tf[x]) for x in ["train", "val"]}
    loaders = {x: torch.utils.data.DataLoader(image_datasets[x], batch_size=4, shuffle=True, num_workers=4)
               for x in ["train", "val"]}
    sizes = {x: len(image_datasets[x]) for x in ["train", "val"]}

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(a.weights))
    for param in model.parameters():
        param.requires_grad = False
    model.classifier[1] = torch.nn.Linear(model.last_channel, 2)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.classifier[1].parameters(), lr=0.001, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)

    best_wts, best_acc = copy.deepcopy(model.state_dict()), 0.0
    for epoch in range(a.epochs):
        for phase in ["train", "val"]:
            model.train() if phase == "train" else model.eval()
            running_loss, running_corrects = 0.0, 0
            for inputs, labels in loaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    _, preds = torch.max(outputs, 1)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)
                running_corrects += torch.sum(preds == labels.data).item()
            if phase == "train":
                scheduler.step()
            acc = running_corrects / sizes[phase]
            if phase == "val" and acc > best_acc:
                best_acc, best_wts = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_wts)
    print(f"wall_seconds: {time.perf_counter() - start:.2f}")
    print(f"best_val_accuracy: {best_acc:.4f}")


if __name__ == "__main__":
    main()
