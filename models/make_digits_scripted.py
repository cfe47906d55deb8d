"""Writes the example TorchScript package `models/digits-scripted/`: `model.ts` and its
initial weights `model.safetensors`.

The network is defined here in PyTorch and exported with `torch.jit.script(model).save()`;
the engine loads and trains the scripted module through libtorch, without any Python. Its
weights are PyTorch's default initialisation from a fixed seed, saved the way a PyTorch user
saves a state dict (parameters and buffers, `num_batches_tracked` included). Run from the
repository root:

    .venv/bin/python models/make_digits_scripted.py

Any PyTorch classifier can be packaged the same way, scripted (`torch.jit.script`) or traced
(`torch.jit.trace`) as it is: the engine finds its parameters and buffers (BatchNorm running
statistics and counters) through libtorch (`crates/torch/src/torchscript.rs`).
"""

import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn


class DigitsCnn(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.features = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(32 * 2 * 2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.adaptive_avg_pool2d(self.features(x), 2)
        return self.fc(self.dropout(torch.flatten(x, 1)))


def main() -> None:
    torch.manual_seed(20261127)
    model = DigitsCnn(in_channels=1, num_classes=10).eval()
    out = pathlib.Path(__file__).resolve().parent / "digits-scripted"
    out.mkdir(exist_ok=True)
    torch.jit.script(model).save(str(out / "model.ts"))
    state = {name: t.contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    print(f"wrote {out / 'model.ts'} and {out / 'model.safetensors'} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
