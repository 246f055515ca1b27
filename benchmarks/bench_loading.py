"""Loading benchmark: prepared dataset on disk -> shuffled, model-ready batches.

Prepares a synthetic dataset with MOSEI's shapes (default 16,000 samples of text [50, 768],
audio [50, 74], visual [50, 35]) with `save_prepared`, then, in a fresh process (as a training
script would start), measures:

* load: `load_prepared` + `InMemoryMultimodalDataset` (reading every column once into tensors);
* epochs: a `DataLoader(batch_size=64, shuffle=True, collate_fn=MultimodalDataCollator())` over the
  whole split, several times; the figure is the median samples/s over epochs;
* load + first epoch: samples / (load time + first epoch time);
* for reference, a few batches of the same DataLoader read straight from Arrow
  (`with_format("torch")`), the path the in-memory dataset replaces.

Usage::

    python benchmarks/bench_loading.py --output bench_loading.json
    python benchmarks/bench_loading.py --num_samples 256 --epochs 2   # smoke run

Not part of the test suite; the default run takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dataset_scripts.io import check_output_file, write_json_atomic  # noqa: E402
from dataset_scripts.modalities import MODALITIES  # noqa: E402

TARGET_SAMPLES_PER_SECOND = 20_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_samples", type=int, default=16_000)
    parser.add_argument("--text_dim", type=int, default=768)
    parser.add_argument("--audio_dim", type=int, default=74)
    parser.add_argument("--visual_dim", type=int, default=35)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--arrow_batches", type=int, default=30, help="Batches read straight from Arrow (0: skip)."
    )
    parser.add_argument(
        "--work_dir",
        type=Path,
        default=None,
        help="Where to write the dataset (default: a temp dir).",
    )
    parser.add_argument("--output", type=Path, default=None, help="Write the results as JSON here.")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing --output file."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure_only", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, dataset_dir: Path) -> float:
    from dataset_scripts.saving import save_prepared
    from dataset_scripts.synthetic import make_synthetic_dataset

    start = time.perf_counter()
    dataset_dict = make_synthetic_dataset(
        num_train=args.num_samples,
        num_validation=0,
        num_test=0,
        seed=args.seed,
        text_dim=args.text_dim,
        audio_dim=args.audio_dim,
        visual_dim=args.visual_dim,
        text_length=args.length,
        audio_length=args.length,
        visual_length=args.length,
    )
    save_prepared(dataset_dict, dataset_dir)
    del dataset_dict
    gc.collect()
    return time.perf_counter() - start


def measure(args: argparse.Namespace, dataset_dir: Path) -> dict[str, object]:
    import torch

    from dataset_scripts.loading import (
        InMemoryMultimodalDataset,
        MultimodalDataCollator,
        load_prepared,
    )
    from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor

    start = time.perf_counter()
    dataset_dict = load_prepared(dataset_dir)
    split = dataset_dict["train"]
    feature_extractor = LDDUFeatureExtractor(
        feature_dims={m: split.features[m].shape[1] for m in MODALITIES},
        max_lengths={m: None for m in MODALITIES},
    )
    train = InMemoryMultimodalDataset(split, feature_extractor)
    load_seconds = time.perf_counter() - start

    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=MultimodalDataCollator(),
        generator=generator,
    )
    expected_keys = {f"{m}_{kind}" for m in MODALITIES for kind in ("features", "mask")} | {
        "labels"
    }
    epoch_seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        seen = 0
        for batch in loader:
            seen += batch["labels"].shape[0]
        epoch_seconds.append(time.perf_counter() - start)
        if seen != len(train) or set(batch) != expected_keys:
            raise RuntimeError(f"unexpected epoch: {seen} samples, keys {sorted(batch)}")
    epoch_rates = [len(train) / seconds for seconds in epoch_seconds]

    arrow_rate = None
    if args.arrow_batches > 0:
        arrow = dataset_dict["train"].with_format("torch", columns=[*MODALITIES, "labels"])
        arrow_loader = torch.utils.data.DataLoader(
            arrow, batch_size=args.batch_size, shuffle=True, generator=generator
        )
        start = time.perf_counter()
        batches = 0
        for _ in arrow_loader:
            batches += 1
            if batches == args.arrow_batches:
                break
        arrow_rate = batches * args.batch_size / (time.perf_counter() - start)

    return {
        "num_samples": len(train),
        "shapes": {m: list(train.tensors[f"{m}_features"].shape[1:]) for m in MODALITIES},
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "load_seconds": load_seconds,
        "epoch_seconds": epoch_seconds,
        "epoch_samples_per_second": epoch_rates,
        "median_samples_per_second": statistics.median(epoch_rates),
        "load_and_first_epoch_samples_per_second": len(train) / (load_seconds + epoch_seconds[0]),
        "arrow_random_access_samples_per_second": arrow_rate,
    }


def print_table(results: dict[str, object], command: str) -> None:
    epochs = ", ".join(f"{rate:,.0f}" for rate in results["epoch_samples_per_second"])
    first = results["load_and_first_epoch_samples_per_second"]
    met = "met" if results["target_met"] else "NOT met"
    rows = [
        ("prepare (generate + save_to_disk)", f"{results['prepare_seconds']:.1f} s"),
        ("load (load_prepared + InMemoryMultimodalDataset)", f"{results['load_seconds']:.2f} s"),
        ("epochs, samples/s", epochs),
        ("median epoch, samples/s", f"{results['median_samples_per_second']:,.0f}"),
        ("load + first epoch, samples/s", f"{first:,.0f}"),
    ]
    arrow = results["arrow_random_access_samples_per_second"]
    if arrow is not None:
        rows.append(("Arrow with_format('torch') DataLoader, samples/s", f"{arrow:,.0f}"))
    rows.append(("target (median epoch)", f">= {TARGET_SAMPLES_PER_SECOND:,} samples/s: {met}"))
    width = max(len(name) for name, _ in rows)
    shapes = ", ".join(f"{m} {shape}" for m, shape in results["shapes"].items())
    print(
        f"\n{results['num_samples']:,} samples ({shapes}), batch {results['batch_size']}, shuffle, "
        f"{results['torch_threads']} torch threads"
    )
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    load = ", ".join(f"{value:.2f}" for value in results["load_average_1_5_15_min"])
    print(f"\nsystem load average (1, 5, 15 min) after the run: {load}")
    print(f"command: {command}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure_only is None:
        check_output_file(args.output, overwrite=args.overwrite)
    logging.basicConfig(level=logging.WARNING)
    if args.measure_only is not None:  # child process: print the measurement as JSON
        print(json.dumps(measure(args, args.measure_only)))
        return 0

    command = shlex.join([Path(sys.executable).name, *sys.argv])
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        dataset_dir = Path(work_dir) / "dataset"
        prepare_seconds = prepare(args, dataset_dir)
        # Measure in a fresh process, as a training script loading the prepared dataset would.
        child_argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            *(argv if argv is not None else sys.argv[1:]),
        ]
        child_argv += ["--measure_only", str(dataset_dir)]
        completed = subprocess.run(
            child_argv, check=True, capture_output=True, text=True, env=dict(os.environ)
        )
        results = json.loads(completed.stdout.strip().splitlines()[-1])
    results["prepare_seconds"] = prepare_seconds
    results["load_average_1_5_15_min"] = list(os.getloadavg())  # other work on the machine
    results["target_samples_per_second"] = TARGET_SAMPLES_PER_SECOND
    results["target_met"] = results["median_samples_per_second"] >= TARGET_SAMPLES_PER_SECOND
    results["command"] = command
    print_table(results, command)
    if args.output is not None:
        write_json_atomic(args.output, results)
        print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
