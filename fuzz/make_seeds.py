"""Writes the seed corpora of the fuzz targets from the repository's real files.

    python fuzz/make_seeds.py OUT_DIR

OUT_DIR/<target>/ receives, for each target, files in the input layout its
fuzz_targets/<target>.rs describes:

- preprocess: a few dataset images (datasets/digits) and images made here with Pillow
  (JPEG baseline, progressive, grey, CMYK; PNG RGB, RGBA, 16-bit, palette, interlaced), each
  behind a few `[mode, size]` headers;
- package: every models/*/config.json, preprocessor_config.json and README.md, and a few
  hyper-parameter and preprocessing objects written here;
- param_file: every weights fixture (crates/torch/tests/fixtures, models/*) as a raw file, and
  each PyTorch archive's data.pkl and storages as the chunks of the archive mode.

Inputs that once crashed a target are committed in fuzz/seeds/<target>/ and copied too.
Seed names are content hashes, so rerunning adds nothing twice. Pillow (from scripts/setup's
environment) is optional: without it only the repository's files are used.
"""

import hashlib
import io
import struct
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (mode, size) headers for the preprocess target: no config; exact resize; shortest edge +
# crop, RGB, augmented, normalised; exact + padding crop, RGB, flip and affine.
HEADERS = [(0x00, 0x00), (0x11, 0x47), (0x36, 0x1B), (0xF7, 0x9C)]


def write(out: Path, data: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / hashlib.sha1(data).hexdigest()).write_bytes(data)


def made_images() -> list[bytes]:
    try:
        from PIL import Image
    except ImportError:
        return []
    images = []
    rgb = Image.new("RGB", (13, 9))
    rgb.putdata([((x * 37) % 256, (y * 59) % 256, (x * y * 11) % 256)
                 for y in range(9) for x in range(13)])

    def save(image, fmt, **options):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        images.append(buffer.getvalue())

    save(rgb, "JPEG", quality=80)
    save(rgb, "JPEG", quality=60, progressive=True)
    save(rgb.convert("L"), "JPEG")
    save(rgb.convert("CMYK"), "JPEG")
    save(rgb.resize((17, 5)), "JPEG", subsampling=2, restart_marker_blocks=1)
    save(rgb, "PNG")
    save(rgb.convert("RGBA"), "PNG")
    save(rgb.convert("I;16"), "PNG")
    save(rgb.convert("P"), "PNG")
    save(rgb.convert("LA"), "PNG")
    save(rgb.resize((1, 20)), "PNG")
    save(rgb, "PNG", interlace=1)
    return images


def preprocess(out: Path) -> None:
    pngs = sorted((ROOT / "datasets" / "digits").rglob("*.png"))[:8]
    images = [p.read_bytes() for p in pngs] + made_images()
    for image in images:
        for mode, size in HEADERS:
            write(out, bytes([mode, size]) + image)


# Hyper-parameters and preprocessing keys the example packages do not use.
EXTRA_PACKAGE_SEEDS = [
    b'{"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,'
    b' "lr_schedule": {"kind": "step", "step_size": 3, "gamma": 0.5}, "batch_size": 8}',
    b'{"optimizer": "adam", "lr_schedule": {"kind": "cosine", "t_max": 10, "eta_min": 0},'
    b' "epochs": 3}',
    b'{"do_resize": true, "size": {"shortest_edge": 256}, "do_center_crop": true,'
    b' "crop_size": {"height": 224, "width": 224}, "do_affine": true, "degrees": [-10, 5],'
    b' "translate": [0.1, 0.2], "do_horizontal_flip": true, "resample": 3,'
    b' "do_normalize": true, "image_mean": [0.5], "image_std": [0.25], "rescale_factor": 0.5}',
]


def package(out: Path) -> None:
    for seed in EXTRA_PACKAGE_SEEDS:
        write(out, seed)
    for model in sorted((ROOT / "models").iterdir()):
        for name in ["config.json", "preprocessor_config.json", "README.md"]:
            if (model / name).is_file():
                write(out, (model / name).read_bytes())


def param_file(out: Path) -> None:
    files = sorted((ROOT / "crates" / "torch" / "tests" / "fixtures").glob("*"))
    files += sorted((ROOT / "models").glob("*/*.safetensors"))
    files += sorted((ROOT / "models").glob("*/*.ts"))
    for path in files:
        if path.suffix not in {".pt", ".safetensors", ".ts", ".ot", ".bin"}:
            continue
        data = path.read_bytes()
        write(out, b"\x00" + data)
        if path.suffix != ".pt":
            continue
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pkl = next(n for n in names if n.endswith("data.pkl"))
            prefix = pkl[: -len("data.pkl")]
            chunks = [archive.read(pkl)]
            key = 0
            while f"{prefix}data/{key}" in names:
                chunks.append(archive.read(f"{prefix}data/{key}"))
                key += 1
        write(out, b"\x01" + b"".join(struct.pack("<I", len(c)) + c for c in chunks))


def committed(out: Path) -> None:
    """fuzz/seeds/<target>/*: inputs that once crashed a target, kept as regressions."""
    for seed in sorted((ROOT / "fuzz" / "seeds").glob("*/*")):
        write(out / seed.parent.name, seed.read_bytes())


def main() -> None:
    out = Path(sys.argv[1])
    preprocess(out / "preprocess")
    package(out / "package")
    param_file(out / "param_file")
    committed(out)


if __name__ == "__main__":
    main()
