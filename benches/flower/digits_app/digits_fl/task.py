"""The digits FedAvg task as fedengine runs it, in plain PyTorch, for the Flower apps.

Everything a round computes is reproduced from the engine's rules so that the engine and
Flower train the same model on the same batches and their accuracies can be compared:

- data: an AlphaMed `annotation.json` per directory, samples in file order, labels as
  indices into `labels`; images decoded to 8-bit grey (as `crates/data/src/preprocess.rs`);
- preprocessing: `preprocessor_config.json` of the model package: (training only) the random
  affine transform, then rescale by 1/255 (computed in f64, stored as f32) and normalise;
- randomness: SplitMix64 streams keyed by `(seed, run-wide epoch)` for the shuffle and
  `(seed, run-wide epoch, sample index)` for the augmentation (`crates/data/src/rng.rs`,
  `crates/data/src/augment.rs`), so the sample order and every augmented image are the
  engine's, bit for bit;
- training (`crates/torch/src/participant.rs`, `train.rs`): a fresh plain SGD optimiser per
  round (`torch.optim.SGD(lr)`, no momentum, no weight decay), the package's learning rate
  under its declared `lr_schedule` (constant unless config.json declares a step or cosine
  schedule on the run-wide epoch; docs/TRAINING.md), batches in the epoch's order with a smaller
  last batch, mean cross-entropy, one libtorch thread;
- exchange: the model's float tensors (parameters and BatchNorm running statistics); like
  the engine's built-in SmallCnn, the `num_batches_tracked` counters are not exchanged
  (BatchNorm's momentum is fixed, so they change nothing);
- aggregation (`crates/tensor/src/aggregate/accumulator.rs`): a running weighted mean in
  f64, folded in sender-name order, rounded to f32 (`fedavg_engine`); Flower's own
  arithmetic (a float32 sum in arrival order) is `fedavg_flower`, for comparison;
- evaluation: evaluation mode, batches of 32 in file order, top-1 accuracy.

Only numpy, pillow, safetensors and torch are needed, so the same module serves the
deployment-mode ClientApp/ServerApp and the legacy gRPC processes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

# --- SplitMix64 and the engine's random streams (crates/data/src/rng.rs) -----------------

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
SHUFFLE_STREAM = 0x5348554646_4C4531  # "SHUFFLE1"
AUGMENT_STREAM = 0x4155474D454E5431  # "AUGMENT1"


def _mix(z: int) -> int:
    """SplitMix64's output function on 64-bit words."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class SplitMix64:
    """The engine's generator: same seed, same stream, on every machine."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    @classmethod
    def from_words(cls, words: list[int]) -> "SplitMix64":
        h = 0
        for w in words:
            h = _mix(((h + _GAMMA) & _MASK) ^ _mix((w + _GAMMA) & _MASK))
        return cls(h)

    def next_u64(self) -> int:
        self.state = (self.state + _GAMMA) & _MASK
        return _mix(self.state)

    def next_f64(self) -> float:
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.next_f64()

    def below(self, n: int) -> int:
        """Uniform in 0..n, unbiased (Lemire's multiply-shift with rejection)."""
        threshold = ((-n) & _MASK) % n
        while True:
            product = self.next_u64() * n
            if (product & _MASK) >= threshold:
                return product >> 64


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The engine's Fisher-Yates order of `n` training samples in a run-wide epoch."""
    order = list(range(n))
    rng = SplitMix64.from_words([SHUFFLE_STREAM, seed, epoch])
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def _round_half_away(x: float) -> float:
    """Rust's `f64::round` (halves away from zero), unlike Python's `round`."""
    r = math.floor(abs(x))
    if abs(x) - r >= 0.5:
        r += 1.0
    return math.copysign(r, x)


# --- Preprocessing (crates/data/src/preprocess.rs, augment.rs) -----------------------------


@dataclass
class Preprocessing:
    """What `preprocessor_config.json` asks for, as far as this task needs."""

    size: int | None
    degrees: tuple[float, float] | None
    translate: tuple[float, float]
    flip: bool
    rescale: float
    mean: float
    std: float

    @classmethod
    def load(cls, package: Path) -> "Preprocessing":
        raw = json.loads((package / "preprocessor_config.json").read_text())

        def pair(value, signed: bool) -> tuple[float, float]:
            if isinstance(value, (int, float)):
                return (-float(value), float(value)) if signed else (float(value),) * 2
            return float(value[0]), float(value[1])

        if raw.get("do_center_crop") or raw.get("do_resize") is False:
            raise ValueError("only the digits package's preprocessing is reproduced")
        affine = raw.get("do_affine") is True
        mean, std = raw.get("image_mean", [0.0]), raw.get("image_std", [1.0])
        if len(mean) != 1 or len(std) != 1 or raw.get("do_normalize") is False:
            raise ValueError("only one-channel normalisation is reproduced")
        return cls(
            size=raw.get("size"),
            degrees=pair(raw.get("degrees", 0.0), True) if affine else None,
            translate=pair(raw.get("translate", 0.0), False) if affine else (0.0, 0.0),
            flip=bool(raw.get("do_horizontal_flip", False)),
            rescale=float(raw.get("rescale_factor", 1.0 / 255.0)),
            mean=float(mean[0]),
            std=float(std[0]),
        )

    def draw(self, seed: int, epoch: int, index: int, height: int, width: int):
        """The engine's random transform of one sample in one epoch: (angle, tx, ty, flip)."""
        rng = SplitMix64.from_words([AUGMENT_STREAM, seed, epoch, index])
        lo, hi = self.degrees if self.degrees is not None else (0.0, 0.0)
        angle = rng.uniform(lo, hi)
        max_dx = self.translate[0] * float(width)
        max_dy = self.translate[1] * float(height)
        tx = _round_half_away(rng.uniform(-max_dx, max_dx))
        ty = _round_half_away(rng.uniform(-max_dy, max_dy))
        flip = rng.next_u64() >> 63 == 1
        return angle, tx, ty, flip

    def finish(self, image: np.ndarray, key: tuple[int, int, int] | None) -> np.ndarray:
        """Augments (when `key` = (seed, epoch, index) is given), rescales and normalises a
        CHW float32 image of 0..255 values."""
        if key is not None and (self.degrees is not None or self.flip):
            _, height, width = image.shape
            angle, tx, ty, flip = self.draw(*key, height, width)
            if self.degrees is not None and (angle, tx, ty) != (0.0, 0.0, 0.0):
                image = warp_affine(image, angle, tx, ty)
            if self.flip and flip:
                image = image[:, :, ::-1].copy()
        scaled = (image.astype(np.float64) * self.rescale - self.mean) / self.std
        return scaled.astype(np.float32)


def warp_affine(image: np.ndarray, angle: float, tx: float, ty: float) -> np.ndarray:
    """Rotates clockwise by `angle` degrees about the centre and translates by (tx, ty)
    pixels, sampling bilinearly with zero fill: the engine's `warp_affine`, with its f64
    coordinates, f32 weights and f32 accumulation in the same order."""
    channels, height, width = image.shape
    rad = angle * (math.pi / 180.0)
    sin, cos = math.sin(rad), math.cos(rad)  # libm, as Rust's sin_cos
    cx, cy = width * 0.5, height * 0.5
    j = np.arange(width, dtype=np.float64)[None, :]
    i = np.arange(height, dtype=np.float64)[:, None]
    x = j + 0.5 - cx - tx
    y = i + 0.5 - cy - ty
    u = cos * x + sin * y + cx - 0.5
    v = -sin * x + cos * y + cy - 0.5
    u0, v0 = np.floor(u), np.floor(v)
    fu = (u - u0).astype(np.float32)
    fv = (v - v0).astype(np.float32)
    one = np.float32(1.0)
    taps = [
        (v0, u0, (one - fu) * (one - fv)),
        (v0, u0 + 1.0, fu * (one - fv)),
        (v0 + 1.0, u0, (one - fu) * fv),
        (v0 + 1.0, u0 + 1.0, fu * fv),
    ]
    out = np.zeros_like(image)
    for c in range(channels):
        acc = np.zeros((height, width), dtype=np.float32)
        for row, col, weight in taps:
            inside = (weight != 0.0) & (row >= 0) & (col >= 0) & (row < height) & (col < width)
            r = np.where(inside, row, 0).astype(np.int64)
            k = np.where(inside, col, 0).astype(np.int64)
            # A tap outside the image adds exactly 0 (values are >= 0, so no -0 appears).
            acc = acc + np.where(inside, weight * image[c][r, k], np.float32(0.0))
        out[c] = acc
    return out


# --- Data ------------------------------------------------------------------------------------


@dataclass
class Split:
    """One split of a dataset directory: decoded 0..255 CHW images and class indices."""

    images: np.ndarray  # [N, 1, H, W] float32
    labels: np.ndarray  # [N] int64

    def __len__(self) -> int:
        return len(self.labels)


def load_split(directory: Path, split: str, size: int | None = None) -> Split:
    """Loads `split` ("Train", "Validation" or "Test") of an AlphaMed dataset directory, in
    file order (the first listing of a file wins, as in the engine)."""
    annotation = json.loads((directory / "annotation.json").read_text())
    labels = annotation["labels"]
    seen: set[str] = set()
    images, targets = [], []
    for name in ("Train", "Validation", "Test"):
        for sample in annotation.get(name, []):
            path = sample["path"]
            if path in seen:
                continue
            seen.add(path)
            if name != split:
                continue
            with Image.open(directory / path) as img:
                grey = np.asarray(img.convert("L"), dtype=np.uint8)
            if size is not None and grey.shape != (size, size):
                raise ValueError(f"{path}: {grey.shape}, expected {size}x{size} (no resize here)")
            images.append(grey.astype(np.float32)[None])
            targets.append(labels.index(sample["tags"][0]["label"]))
    if not images:
        raise ValueError(f"{directory}: no {split} samples")
    return Split(np.stack(images), np.asarray(targets, dtype=np.int64))


# --- Model -----------------------------------------------------------------------------------


class SmallCnn(nn.Module):
    """fedengine's built-in `fedengine.vision.SmallCnn` (models/make_digits_cnn.py)."""

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


Weights = dict[str, np.ndarray]


def exchanged(name: str) -> bool:
    """Whether a state-dict entry travels between server and clients."""
    return not name.endswith("num_batches_tracked")


def initial_weights(package: Path) -> Weights:
    """The package's `model.safetensors`, the tensors that are exchanged, sorted by name."""
    from safetensors.numpy import load_file

    tensors = load_file(str(package / "model.safetensors"))
    return {k: np.ascontiguousarray(tensors[k]) for k in sorted(tensors) if exchanged(k)}


def model_bytes(weights: Weights) -> int:
    return int(sum(a.nbytes for a in weights.values()))


def _load(model: nn.Module, weights: Weights) -> None:
    state = model.state_dict()
    missing = [k for k in state if exchanged(k) and k not in weights]
    if missing:
        raise ValueError(f"weights lack {missing}")
    with torch.no_grad():
        for name, array in weights.items():
            state[name].copy_(torch.from_numpy(np.asarray(array)))


def _weights(model: nn.Module) -> Weights:
    state = model.state_dict()
    return {k: state[k].detach().numpy().copy() for k in sorted(state) if exchanged(k)}


# --- Hyper-parameters ------------------------------------------------------------------------


@dataclass
class HyperParameters:
    """config.json's training keys with the engine's defaults (docs/TRAINING.md)."""

    learning_rate: float
    batch_size: int
    schedule: dict

    @classmethod
    def load(cls, package: Path) -> "HyperParameters":
        raw = json.loads((package / "config.json").read_text())
        optimizer = str(raw.get("optimizer", "adam")).lower()
        if optimizer != "sgd" or raw.get("momentum", 0) or raw.get("weight_decay", 0):
            raise ValueError("only plain SGD (no momentum, no weight decay) is reproduced")
        return cls(
            learning_rate=float(raw.get("learning_rate", 1e-3)),
            batch_size=int(raw.get("batch_size", 32)),
            schedule=_schedule(raw.get("lr_schedule", "constant")),
        )

    def learning_rate_at(self, epoch: int) -> float:
        """PyTorch's StepLR / CosineAnnealingLR in closed form, as the engine computes them."""
        kind = self.schedule["kind"]
        if kind == "step":
            gamma = float(self.schedule.get("gamma", 0.1))
            return self.learning_rate * gamma ** (epoch // int(self.schedule["step_size"]))
        if kind == "cosine":
            eta_min = float(self.schedule.get("eta_min", 0.0))
            phase = math.pi * epoch / int(self.schedule["t_max"])
            return eta_min + (self.learning_rate - eta_min) * (1 + math.cos(phase)) / 2
        return self.learning_rate


def _schedule(raw) -> dict:
    if isinstance(raw, str):
        return {"kind": raw.lower()}
    return {**raw, "kind": str(raw["kind"]).lower()}


# --- A participant and the evaluator ---------------------------------------------------------


@dataclass
class Trainer:
    """One site: its training split, loaded once per process, and the package's settings."""

    package: Path
    data_dir: Path
    seed: int
    threads: int = 1
    _hp: HyperParameters | None = field(default=None, repr=False)
    _pre: Preprocessing | None = field(default=None, repr=False)
    _train: Split | None = field(default=None, repr=False)

    def samples(self) -> int:
        self._setup()
        return len(self._train)

    def _setup(self) -> None:
        if self._train is None:
            self._hp = HyperParameters.load(self.package)
            self._pre = Preprocessing.load(self.package)
            self._train = load_split(self.data_dir, "Train", self._pre.size)

    def train_round(self, weights: Weights, round_index: int, merge_epochs: int) -> dict:
        """Trains `merge_epochs` epochs of 0-based round `round_index` from `weights`.

        Returns {"weights", "samples", "loss", "accuracy", "train_seconds", "load_seconds",
        "train_start", "train_end"}; the seconds cover what the engine's count: loading the
        weights, (decoding the data the first time in this process: `load_seconds`), every
        epoch and reading the weights back.
        """
        started_wall, started = time.time(), time.perf_counter()
        torch.set_num_threads(self.threads)
        self._setup()
        loaded = time.perf_counter()
        hp, pre, data = self._hp, self._pre, self._train
        model = SmallCnn(1, 10)
        _load(model, weights)
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=hp.learning_rate)
        loss_sum, correct, seen = 0.0, 0, 0
        for e in range(merge_epochs):
            epoch = round_index * merge_epochs + e
            for group in optimizer.param_groups:
                group["lr"] = hp.learning_rate_at(epoch)
            loss_sum, correct, seen = 0.0, 0, 0
            order = epoch_order(len(data), self.seed, epoch)
            for b in range(0, len(order), hp.batch_size):
                positions = order[b : b + hp.batch_size]
                xs = torch.from_numpy(
                    np.stack([pre.finish(data.images[k], (self.seed, epoch, k)) for k in positions])
                )
                ys = torch.from_numpy(data.labels[positions])
                optimizer.zero_grad()
                logits = model(xs)
                loss = F.cross_entropy(logits, ys)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    loss_sum += float(loss) * len(positions)
                    correct += int((logits.argmax(-1) == ys).sum())
                    seen += len(positions)
        result = _weights(model)
        return {
            "weights": result,
            "samples": len(data),
            "loss": loss_sum / max(seen, 1),
            "accuracy": correct / max(seen, 1),
            "train_seconds": time.perf_counter() - started,
            "load_seconds": loaded - started,
            "train_start": started_wall,
            "train_end": time.time(),
        }


@dataclass
class Evaluator:
    """The initiator: evaluates global weights on its Validation and Test splits."""

    package: Path
    data_dir: Path
    threads: int = 1
    batch_size: int = 32
    _splits: dict[str, Split] = field(default_factory=dict, repr=False)
    _pre: Preprocessing | None = field(default=None, repr=False)

    def evaluate(self, weights: Weights, split: str) -> dict:
        torch.set_num_threads(self.threads)
        if self._pre is None:
            self._pre = Preprocessing.load(self.package)
        if split not in self._splits:
            self._splits[split] = load_split(self.data_dir, split, self._pre.size)
        data = self._splits[split]
        model = SmallCnn(1, 10)
        _load(model, weights)
        model.eval()
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for b in range(0, len(data), self.batch_size):
                idx = range(b, min(b + self.batch_size, len(data)))
                xs = torch.from_numpy(np.stack([self._pre.finish(data.images[k], None) for k in idx]))
                ys = torch.from_numpy(data.labels[b : b + len(idx)])
                logits = model(xs)
                loss_sum += float(F.cross_entropy(logits, ys)) * len(idx)
                correct += int((logits.argmax(-1) == ys).sum())
        return {"loss": loss_sum / len(data), "accuracy": correct / len(data), "samples": len(data)}


# --- Aggregation -----------------------------------------------------------------------------


def fedavg_engine(updates: list[tuple[str, int, Weights]]) -> Weights:
    """FedAvg weighted by samples as the engine computes it: a running weighted mean in f64,
    `m += (n_k / N_k) (x_k - m)` skipping exact zeros of the difference, folded in sender-name
    order, rounded to each tensor's float dtype."""
    updates = sorted(updates, key=lambda u: u[0])
    means: dict[str, np.ndarray] = {}
    total = 0
    for _, samples, weights in updates:
        total += samples
        step = samples / total
        for name, array in weights.items():
            x = np.asarray(array, dtype=np.float64)
            if name not in means:
                means[name] = x.copy()
            else:
                m = means[name]
                delta = x - m
                m += np.where(delta != 0.0, step * delta, 0.0)
    dtypes = {name: np.asarray(a).dtype for name, a in updates[0][2].items()}
    return {name: means[name].astype(dtypes[name]) for name in sorted(means)}


def fedavg_flower(updates: list[tuple[str, int, Weights]]) -> Weights:
    """FedAvg weighted by samples with Flower's arithmetic (`aggregate_arrayrecords`): each
    update scaled by n_k / N in its own dtype and summed in the order given."""
    total = sum(n for _, n, _ in updates)
    out: dict[str, np.ndarray] = {}
    for _, samples, weights in updates:
        factor = samples / total
        for name, array in weights.items():
            scaled = np.asarray(array) * factor
            out[name] = scaled if name not in out else out[name] + scaled
    return {name: out[name] for name in sorted(out)}


AGGREGATIONS = {"engine": fedavg_engine, "flower": fedavg_flower}
