#!/usr/bin/env python3
"""Writes the example digits datasets (AlphaMed annotation.json + 8x8 grey PNG files).

Source: scikit-learn's bundled copy of the UCI optical handwritten digits (1797 images,
8x8, values 0..16, 10 classes), scaled to 0..255. Reproducible: fixed seeds, sorted output,
PNG files without timestamps. Run from the repository root:

    .venv/bin/python datasets/digits/make_digits.py

Layout written next to this script (each directory self-contained):
    central/    Train, Validation, Test   (local fine-tuning)
    initiator/  Validation, Test          (the FedAvg initiator's held-out data)
    site-1..3/  Train only                (non-IID shards of central's Train: label skew)
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 20240611
TEST_FRACTION = 0.20
VALIDATION_FRACTION = 0.10  # of what remains after the test split
SITES = 3
ALPHA = 0.5  # Dirichlet concentration: smaller = more label skew
# Each site must hold at least MIN_PER_CLASS examples of at least MIN_CLASSES classes, at
# least MIN_SITE_SIZE images, and its own majority class; the shard seed is the first one
# from SEED upwards that satisfies this.
MIN_PER_CLASS = 3
MIN_CLASSES = 7
MIN_SITE_SIZE = 150
LABELS = [str(d) for d in range(10)]

HERE = Path(__file__).resolve().parent


def shard_by_dirichlet(indices, labels, seed):
    """Splits indices into SITES shards, each class divided by Dirichlet(ALPHA) weights."""
    rng = np.random.default_rng(seed)
    shards = [[] for _ in range(SITES)]
    for c in range(len(LABELS)):
        members = indices[labels[indices] == c]
        members = members[rng.permutation(len(members))]
        weights = rng.dirichlet([ALPHA] * SITES)
        cuts = (np.cumsum(weights)[:-1] * len(members)).astype(int)
        for site, part in enumerate(np.split(members, cuts)):
            shards[site].extend(part.tolist())
    return [np.array(sorted(s), dtype=int) for s in shards]


def acceptable(shards, labels):
    majorities = set()
    for shard in shards:
        counts = np.bincount(labels[shard], minlength=len(LABELS))
        if len(shard) < MIN_SITE_SIZE or (counts >= MIN_PER_CLASS).sum() < MIN_CLASSES:
            return False
        majorities.add(int(counts.argmax()))
    return len(majorities) == SITES


def write_dataset(name, splits, images, labels):
    """Writes DIR/images/NNNN.png and DIR/annotation.json with the given splits."""
    out = HERE / name
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    lines = ["{", f'"labels": {json.dumps(LABELS)},']
    split_blocks = []
    for split, indices in splits.items():
        samples = []
        for i in indices:
            path = f"images/{i:04d}.png"
            Image.fromarray(images[i]).save(out / path, optimize=True)
            sample = {"path": path, "tags": [{"label": LABELS[labels[i]], "source": "manual"}]}
            samples.append(json.dumps(sample))
        split_blocks.append(f'"{split}": [\n' + ",\n".join(samples) + "\n]")
    lines.append(",\n".join(split_blocks))
    lines.append("}")
    (out / "annotation.json").write_text("\n".join(lines) + "\n")


def histogram(indices, labels):
    return np.bincount(labels[indices], minlength=len(LABELS)).tolist()


def main():
    digits = load_digits()
    # 0..16 -> 0..255, rounded.
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = digits.target.astype(int)
    everything = np.arange(len(labels))

    rest, test = train_test_split(
        everything, test_size=TEST_FRACTION, stratify=labels, random_state=SEED
    )
    train, validation = train_test_split(
        rest, test_size=VALIDATION_FRACTION, stratify=labels[rest], random_state=SEED
    )
    train, validation, test = (np.sort(a) for a in (train, validation, test))

    shard_seed = SEED
    while True:
        shards = shard_by_dirichlet(train, labels, shard_seed)
        if acceptable(shards, labels):
            break
        shard_seed += 1
        if shard_seed > SEED + 10_000:
            sys.exit("no shard seed satisfies the constraints")

    write_dataset("central", {"Train": train, "Validation": validation, "Test": test}, images, labels)
    write_dataset("initiator", {"Validation": validation, "Test": test}, images, labels)
    for k, shard in enumerate(shards, start=1):
        write_dataset(f"site-{k}", {"Train": shard}, images, labels)

    print(f"images: {len(labels)}; seed {SEED}; shard seed {shard_seed} (Dirichlet alpha {ALPHA})")
    print(f"central: Train {len(train)}, Validation {len(validation)}, Test {len(test)}")
    print(f"initiator: Validation {len(validation)}, Test {len(test)}")
    print(f"label histograms (counts of {', '.join(LABELS)}):")
    print(f"  central Train      {histogram(train, labels)}")
    print(f"  central Validation {histogram(validation, labels)}")
    print(f"  central Test       {histogram(test, labels)}")
    for k, shard in enumerate(shards, start=1):
        counts = histogram(shard, labels)
        majority = int(np.argmax(counts))
        print(f"  site-{k} Train {len(shard):4d} {counts}  majority {LABELS[majority]}")


if __name__ == "__main__":
    main()
