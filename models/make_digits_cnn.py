"""Writes the initial weights of the example package `models/digits-cnn/`.

The network is fedengine's built-in `fedengine.vision.SmallCnn` written in PyTorch, with the
same parameter names, initialised by PyTorch's defaults from a fixed seed and saved the way a
PyTorch user would save a state dict. Run from the repository root:

    .venv/bin/python models/make_digits_cnn.py
"""

import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn


class SmallCnn(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64 * 2 * 2, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.adaptive_avg_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


def main() -> None:
    torch.manual_seed(20261126)
    model = SmallCnn(in_channels=1, num_classes=10)
    out = pathlib.Path(__file__).resolve().parent / "digits-cnn" / "model.safetensors"
    state = {name: t.contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(out), metadata={"format": "pt"})
    print(f"wrote {out} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
