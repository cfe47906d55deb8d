"""The PyTorch side of fedbench's training-throughput benchmark.

Runs the same model, batch size, optimiser and thread count as the engine and prints one
JSON object with samples per second. Called by `fedbench`; standalone:

    .venv/bin/python benches/pytorch_train.py --model small_cnn --data datasets/digits/central --threads 1
    .venv/bin/python benches/pytorch_train.py --model resnet18 --threads 2 --steps 10
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "models"))
from make_digits_cnn import SmallCnn  # noqa: E402


def load_digits(root: pathlib.Path):
    annotation = json.loads((root / "annotation.json").read_text())
    labels = annotation["labels"]
    images, targets = [], []
    for sample in annotation["Train"]:
        img = np.asarray(Image.open(root / sample["path"]).convert("L"), dtype=np.float32) / 255.0
        images.append((img - 0.5) / 0.5)
        targets.append(labels.index(sample["tags"][0]["label"]))
    x = torch.from_numpy(np.stack(images)).unsqueeze(1)
    return x, torch.tensor(targets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["small_cnn", "resnet18"], required=True)
    parser.add_argument("--data", type=pathlib.Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.model == "small_cnn":
        x, y = load_digits(args.data)
        model = SmallCnn(1, 10)
    else:
        import torchvision

        x = torch.randn(args.batch * args.steps, 3, 64, 64)
        y = torch.randint(0, 10, (args.batch * args.steps,))
        model = torchvision.models.resnet18(num_classes=10)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    results = []
    for _ in range(args.repeats):
        order = torch.randperm(len(x))
        start = time.perf_counter()
        for i in range(0, len(x), args.batch):
            idx = order[i : i + args.batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        results.append(len(x) / (time.perf_counter() - start))
    print(json.dumps({"samples_per_second": results}))


if __name__ == "__main__":
    main()
