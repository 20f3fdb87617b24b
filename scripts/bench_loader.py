"""Can the ImageNet datamodule feed the model? Images per second of its training loader
alone, of `nas.train`'s fit end to end, and of the plain training step on in-memory
batches, on a synthetic ImageFolder of JPEGs written first; and what one image costs on one
core (decoding alone, and the whole training transform), which says how many cores a
model's step rate needs.

    python scripts/bench_loader.py --root /tmp/jpegs --images 20000 --out runs/loader.json
    python scripts/bench_loader.py --root /tmp/jpegs --images 2000 --classes 10 --batch 64 \\
        --batches 20 --no-train --normalize-on workers   # the loader alone, as on a CPU

The JPEGs are `--width` x `--height` (500 x 375, ImageNet's most common size), smooth colour
fields with noise, about ImageNet's file size; written once (in parallel) and reused. Per
image: the median over `--repeats` passes of `--sample` files in this process. Loader
alone: `--batches` batches after `--warmup`, with the datamodule's own transforms
(nas/data/imagefolder.py) in `data.num_workers` worker processes. End to end:
`Recipe.train` of `--arch` on that data for `--warmup` + `--batches` training batches
(precision and memory format as the trainer's `auto` picks them), timed from the first batch
after the warm-up to the last. Plain step: scripts/bench_throughput.py's step at the same
batch, size, precision and layout. Goal (issue 25): end to end >= 0.9 x plain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np


def _write(args: tuple[str, int, int, int]) -> None:
    from PIL import Image

    path, seed, width, height = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-0.4, 0.4, (2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    img += rng.normal(0, 24, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def write_folder(root: Path, images: int, classes: int, width: int, height: int,
                 val_per_class: int = 2) -> float:
    """root/{train,val}/cNNNN/*.JPEG (kept when already complete); returns the mean file
    size in kB."""
    jobs = []
    for split, per_class in (("train", images // classes), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"c{c:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                path = folder / f"{i:06d}.JPEG"
                if not path.is_file():
                    jobs.append((str(path), (c * 100_000 + i) * 2 + (split == "val"), width,
                                 height))
    if jobs:
        with Pool(os.cpu_count()) as pool:
            pool.map(_write, jobs, chunksize=64)
    sizes = [p.stat().st_size for p in (root / "train").glob("c0000/*.JPEG")]
    return sum(sizes) / len(sizes) / 1024


def per_image_ms(datamodule, sample: int, repeats: int) -> tuple[float, float]:
    """(decoding alone, the whole training transform) in ms per image on one core (the
    transform normalises unless the batches are uint8): medians over `repeats` passes of the
    first `sample` training files."""
    import torch
    from PIL import Image

    dataset = datamodule.train_dataset()
    paths = dataset.paths[:sample]

    def decode():
        for path in paths:
            with Image.open(path) as img:
                img.convert("RGB")

    def transform():
        for i in range(len(paths)):
            dataset[(i, i)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        costs = []
        for fn in (decode, transform):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            costs.append(1000 * float(np.median(times)) / len(paths))
    finally:
        torch.set_num_threads(threads)
    return costs[0], costs[1]


def loader_images_per_second(datamodule, batches: int, warmup: int) -> float:
    it = iter(datamodule.train_dataloader())
    for _ in range(warmup):
        next(it)
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        x, _ = next(it)
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def end_to_end_images_per_second(recipe, spec, run_dir: Path, batches: int,
                                 warmup: int) -> float:
    import torch
    from pytorch_lightning.callbacks import Callback

    class Clock(Callback):
        def __init__(self):
            self.marks: list[tuple[float, int]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), batch[0].shape[0]))

    clock = Clock()
    recipe.train(spec, run_dir, seed=0, callbacks=[clock])
    timed = clock.marks[warmup - 1:]
    return sum(n for _, n in timed[1:]) / (timed[-1][0] - timed[0][0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--arch", default="mobilenetv2_100")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--normalize-on", choices=("auto", "workers", "device"), default="auto",
                   help="data.normalize_on: float batches from the workers, or uint8 ones")
    p.add_argument("--sample", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-train", action="store_true",
                   help="the per-image costs and the loader only (no end to end, no step)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    from nas.console import quiet_third_party
    quiet_third_party()
    from nas.arch.zoo import get_spec
    from nas.data import ImageNetConfig, make_datamodule
    from nas.memory_format import resolve
    from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, resolve_precision
    from nas.training import Recipe

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_throughput import build, images_per_second

    start = time.perf_counter()
    kb = write_folder(args.root, args.images, args.classes, args.width, args.height)
    written = time.perf_counter() - start
    data = ImageNetConfig(root=str(args.root), num_classes=args.classes, input_size=args.size,
                          batch_size=args.batch, eval_batch_size=args.batch,
                          num_workers=args.workers, normalize_on=args.normalize_on)
    datamodule = make_datamodule(data)   # one folder scan serves both measurements
    decode_ms, image_ms = per_image_ms(datamodule, args.sample, args.repeats)
    print(f"one core: decoding {decode_ms:.2f} ms/image, the training transform in all "
          f"{image_ms:.2f} ms/image ({1000 / image_ms:,.0f} images/s per core)", flush=True)
    loader = loader_images_per_second(datamodule, args.batches, args.warmup)
    raw = data.raw_batches()
    print(f"loader alone: {loader:,.0f} images/s ({args.workers} workers, "
          f"{'uint8' if raw else 'float32'} batches)", flush=True)
    found = {
        "cpus": os.cpu_count(), "workers": args.workers, "images": args.images,
        "jpeg_kb": round(kb, 1), "write_seconds": round(written, 1), "size": args.size,
        "batch": args.batch, "uint8_batches": raw, "decode_ms_per_image": round(decode_ms, 3),
        "transform_ms_per_image": round(image_ms, 3), "loader_images_per_s": round(loader, 1)}
    if args.no_train:
        return write_found(args.out, found, torch.device("cpu"))

    trainer = TrainerConfig(enable_progress_bar=False)
    steps = args.warmup + args.batches
    recipe = Recipe(data=data, budget=BudgetConfig(name="bench", epochs=1,
                                                   limit_train_batches=steps,
                                                   limit_val_batches=1, limit_test_batches=1),
                    trainer=trainer, logger=LoggerConfig(csv=False, wandb=False,
                                                         wandb_mode="disabled"),
                    export_onnx=False)
    spec = get_spec(args.arch, num_classes=args.classes, input_size=args.size)
    with tempfile.TemporaryDirectory() as tmp:
        e2e = end_to_end_images_per_second(recipe, spec, Path(tmp), args.batches, args.warmup)
    print(f"nas.train end to end: {e2e:,.0f} images/s", flush=True)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(trainer.precision, trainer.accelerator)
    layout = "channels_last" if resolve(trainer.memory_format, device) == \
        torch.channels_last else "nchw"
    plain = images_per_second(build("nas", args.arch, args.classes), batch=args.batch,
                              size=args.size, num_classes=args.classes,
                              precision="bf16" if precision.startswith("bf16") else "fp32",
                              layout=layout, steps=args.batches, warmup=args.warmup,
                              device=device)
    ratio = e2e / plain
    print(f"plain step ({precision}, {layout}): {plain:,.0f} images/s; end to end / plain = "
          f"{ratio:.2f} (goal 0.9)")
    found.update({"arch": args.arch, "precision": precision, "layout": layout,
                  "end_to_end_images_per_s": round(e2e, 1),
                  "plain_step_images_per_s": round(plain, 1),
                  "end_to_end_over_plain": round(ratio, 3)})
    return write_found(args.out, found, device)


def write_found(out: Path | None, found: dict, device) -> int:
    if out:
        from nas.cost.timing import device_name
        from nas.files import write_text_atomic
        write_text_atomic(out, json.dumps({"device": device_name(device), **found}, indent=1)
                          + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
