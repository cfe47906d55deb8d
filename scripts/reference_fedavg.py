#!/usr/bin/env python3
"""Plain PyTorch FedAvg on fedengine's data layout: the reference the newcomer test compares
`engine submit` with (crates/cli/tests/newcomer.rs), and a way to check any small task by hand.

    reference_fedavg.py make-images OUT [--classes 3] [--per-class 300] [--size 16] [--seed 0]
        Writes an ImageFolder tree OUT/<label>/<n>.png of grey images whose class is their
        brightness, with noise that makes neighbouring classes overlap (so accuracy has a
        ceiling well below 100 % that any decent training reaches).

    reference_fedavg.py fedavg --model PKG --initiator DIR --site DIR [--site DIR ...]
                               [--rounds 20] [--merge-epochs 1] [--patience 10] [--seed 0]
        Trains the package's built-in SmallCnn with FedAvg as the engine defines it and prints
        JSON: per-round validation and test accuracy, the best round and its test accuracy.

What the reference does, from the package's own files only (every hyper-parameter must be
written in its config.json, as `engine model new` writes them):
- the initial weights are the package's `model.safetensors`;
- each round, each site trains `merge-epochs` epochs on its Train split from the global
  weights with a fresh optimiser (`torch.optim.Adam(lr, weight_decay)` or `SGD(lr, momentum,
  weight_decay)`), shuffled batches of `batch_size` (the last one smaller), mean
  cross-entropy, the learning rate constant (only `lr_schedule: constant` is reproduced);
- the global model is the sample-weighted mean of every float tensor of the state dict
  (BatchNorm running statistics included; `num_batches_tracked` stays local);
- the initiator evaluates the global model (eval mode) on its Validation and Test splits every
  round; the best round is the first with the highest validation accuracy, and the task
  stops after `patience` rounds without a better one;
- images: 8-bit grey, scaled to 0-1, normalised with the preprocessor's mean and std; they
  must already have the preprocessor's `size` (no resampling is reproduced).

The shuffling order is PyTorch's, not the engine's, so the two agree on accuracy (within a
couple of points on enough test images), not bit for bit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

# fedengine.vision.SmallCnn in PyTorch, with the engine's parameter names: the definition the
# example package was made with.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models"))
from make_digits_cnn import SmallCnn  # noqa: E402


def make_images(out: Path, classes: int, per_class: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    levels = np.linspace(50, 205, classes)
    spacing = levels[1] - levels[0] if classes > 1 else 100.0
    for k, level in enumerate(levels):
        folder = out / f"level {k}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            # A per-image brightness offset makes neighbouring classes overlap.
            offset = rng.normal(0.0, 0.45 * spacing)
            pixels = level + offset + rng.normal(0.0, 12.0, (size, size))
            image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
            Image.fromarray(image, mode="L").save(folder / f"{n:04d}.png")


def load_split(directory: Path, split: str, labels: list[str], pre: dict) -> tuple:
    annotation = json.loads((directory / "annotation.json").read_text())
    index = {label: i for i, label in enumerate(labels)}
    size = int(pre["size"])
    mean = float(pre["image_mean"][0])
    std = float(pre["image_std"][0])
    xs, ys = [], []
    for item in annotation.get(split, []):
        image = Image.open(directory / item["path"]).convert("L")
        if image.size != (size, size):
            sys.exit(f"{item['path']}: {image.size}, the reference needs {size}x{size} images")
        array = np.asarray(image, dtype=np.float32) / 255.0
        xs.append((array - mean) / std)
        ys.append(index[item["tags"][0]["label"]])
    x = torch.from_numpy(np.stack(xs)[:, None]) if xs else torch.zeros(0, 1, size, size)
    return x, torch.tensor(ys, dtype=torch.long)


def optimiser(model: nn.Module, config: dict):
    lr = float(config["learning_rate"])
    decay = float(config["weight_decay"])
    if str(config["optimizer"]).lower() == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=float(config["momentum"]), weight_decay=decay
        )
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)


def accuracy(model: nn.Module, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def fedavg(args) -> dict:
    package = Path(args.model)
    config = json.loads((package / "config.json").read_text())
    pre = json.loads((package / "preprocessor_config.json").read_text())
    schedule = config["lr_schedule"]
    if schedule != "constant" and schedule.get("kind") != "constant":
        sys.exit("only a constant learning rate is reproduced")
    if config["entry_class"] != "SmallCnn" or int(config["in_channels"]) != 1:
        sys.exit("only a grey SmallCnn package is reproduced")
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    model = SmallCnn(1, len(labels))
    state = load_file(str(package / config["param_file"]))
    model.load_state_dict(state, strict=False)
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    shared = [k for k in global_state if not k.endswith("num_batches_tracked")]

    sites = [load_split(Path(d), "Train", labels, pre) for d in args.site]
    validation = load_split(Path(args.initiator), "Validation", labels, pre)
    test = load_split(Path(args.initiator), "Test", labels, pre)
    batch = int(config["batch_size"])

    rounds, best, waited = [], None, 0
    for r in range(1, args.rounds + 1):
        updates = []
        for x, y in sites:
            model.load_state_dict(global_state)
            opt = optimiser(model, config)
            model.train()
            for _ in range(args.merge_epochs):
                order = torch.randperm(len(y))
                for start in range(0, len(y), batch):
                    idx = order[start : start + batch]
                    opt.zero_grad()
                    F.cross_entropy(model(x[idx]), y[idx]).backward()
                    opt.step()
            updates.append(({k: v.detach().clone() for k, v in model.state_dict().items()}, len(y)))
        total = sum(n for _, n in updates)
        for k in shared:
            global_state[k] = sum(s[k].double() * n for s, n in updates).div(total).float()
        model.load_state_dict(global_state)
        row = {
            "round": r,
            "validation_accuracy": accuracy(model, *validation),
            "test_accuracy": accuracy(model, *test),
        }
        rounds.append(row)
        if best is None or row["validation_accuracy"] > best["validation_accuracy"]:
            best, waited = row, 0
        else:
            waited += 1
            if waited >= args.patience:
                break
    return {
        "rounds": rounds,
        "best_round": best["round"],
        "best_validation_accuracy": best["validation_accuracy"],
        "test_accuracy": best["test_accuracy"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    images = commands.add_parser("make-images")
    images.add_argument("out", type=Path)
    images.add_argument("--classes", type=int, default=3)
    images.add_argument("--per-class", type=int, default=300)
    images.add_argument("--size", type=int, default=16)
    images.add_argument("--seed", type=int, default=0)
    run = commands.add_parser("fedavg")
    run.add_argument("--model", required=True)
    run.add_argument("--initiator", required=True)
    run.add_argument("--site", action="append", required=True)
    run.add_argument("--rounds", type=int, default=20)
    run.add_argument("--merge-epochs", type=int, default=1)
    run.add_argument("--patience", type=int, default=10)
    run.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "make-images":
        make_images(args.out, args.classes, args.per_class, args.size, args.seed)
    else:
        print(json.dumps(fedavg(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
