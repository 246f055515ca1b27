"""Missing modalities: LDDU (with and without its modality dropout) and MCUR on the same data,
judged under the seven fixed modality conditions.

Data: the built-in synthetic generator (multi-label, MOSEI's 6 emotions, text/audio/visual) with
``--synthetic_signal_split`` (each emotion's evidence split 70/15/15 % over the three modalities,
the 70 % in a different modality for different emotions, so that losing any modality costs
something real) and ``--synthetic_missing_rate 0.3`` in the train and validation splits (each
modality of a sample missing with probability 0.3, at least one kept). The test split is complete;
each condition (t, a, v, ta, tv, av, tav) gives only those modalities to every test sample (the
others marked absent), the protocol of the MCUR authors' earlier public missing-modality code.

Models, all through ``train.py`` with the synthetic preset (sizes, epochs, learning rate),
checkpoint and threshold chosen on validation:

* ``LDDU``: as is;
* ``LDDU + dropout``: ``--modality_dropout text=0.3,audio=0.3,visual=0.3`` (training only);
* ``MCUR``: the family's defaults at the preset size (views, MCB-CL, SUGR ``learned``);
* ``mean-pool + LogReg``: the baseline of ``benchmarks/family_runs.py`` on the same inputs
  (absent modalities as zeros plus an "absent" flag), one global threshold tuned on validation.

Per condition: micro- and macro-F1 (mean ± sample std over the training seeds; the data stay
fixed) and their mean over the seven conditions; then how well each model's uncertainty ranks
wrong decisions above right ones (AUROC): MCUR's ``sample_uncertainty`` per sample (a sample is
wrong when any emotion is), LDDU's ``uncertainty`` per (sample, emotion) decision.

Usage::

    python benchmarks/bench_missing_modality.py --output bench_missing_modality.json
    python benchmarks/bench_missing_modality.py --seeds 0 --synthetic_train_size 200 --num_train_epochs 1

Timings and figures vary with the machine and the seeds.
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

from family_runs import format_cell, logistic_baseline, machine_info, train_run  # noqa: E402

from dataset_scripts.io import check_output_file, write_json_atomic  # noqa: E402
from mmer.evaluation import MODALITY_COMBINATIONS  # noqa: E402

DATA_ARGUMENTS = [
    "--synthetic_signal_split",
    "true",
    "--synthetic_missing_rate",
    "0.3",
    "--synthetic_missing_splits",
    "train,validation",
]
MODELS = {
    "LDDU": ["--model_type", "lddu"],
    "LDDU + dropout": [
        "--model_type",
        "lddu",
        "--modality_dropout",
        "text=0.3,audio=0.3,visual=0.3",
    ],
    "MCUR": ["--model_type", "mcur"],
}
#: Each model's headline uncertainty, as the evaluation names its error AUROC.
UNCERTAINTY = {
    "LDDU": "uncertainty_error_auroc",
    "LDDU + dropout": "uncertainty_error_auroc",
    "MCUR": "sample_error_auroc",
}
COMMON_ARGUMENTS = ["--disable_tqdm", "true", "--report_to", "none", "--use_cpu", "true"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2", help="Training seeds (the data stay fixed).")
    parser.add_argument("--synthetic_train_size", type=int, default=None, help="Smoke runs.")
    parser.add_argument("--num_train_epochs", type=float, default=None, help="Smoke runs.")
    parser.add_argument("--output", type=Path, default=None, help="Write the results as JSON.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads.")
    return parser.parse_args(argv)


def _table(title: str, rows: dict[str, list[dict]], key: str) -> str:
    columns = [*MODALITY_COMBINATIONS, "mean"]
    header = f"{title:<26}" + "".join(f"{c:>15}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, per_seed in rows.items():
        cells = []
        for column in columns:
            values = [seed_rows[column].get(key) for seed_rows in per_seed]
            cells.append(f"{format_cell(values):>15}")
        lines.append(f"{name:<26}" + "".join(cells))
    return "\n".join(lines)


def _condition_rows(results: dict) -> dict:
    """``{condition: row, "mean": row}`` of one run."""
    return {**results["modality_combinations"], "mean": results["modality_combinations_mean"]}


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    check_output_file(args.output, overwrite=args.overwrite)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    import train

    torch.set_num_threads(args.threads)
    data = list(DATA_ARGUMENTS)
    if args.synthetic_train_size is not None:
        data += ["--synthetic_train_size", str(args.synthetic_train_size)]
    training = (
        [] if args.num_train_epochs is None else ["--num_train_epochs", str(args.num_train_epochs)]
    )
    started = time.perf_counter()
    report = {
        "command": "python benchmarks/bench_missing_modality.py " + shlex.join(argv),
        "seeds": seeds,
        "data_arguments": data,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_missing_") as temporary:
        for name, model_arguments in MODELS.items():
            report["runs"][name] = []
            for seed in seeds:
                output = Path(temporary) / f"{name.replace(' ', '')}-{seed}"
                argv_run = [*model_arguments, "--output_dir", str(output), "--seed", str(seed)]
                run = train_run(argv_run + data + training + COMMON_ARGUMENTS)
                run["results"].pop("widget_examples", None)
                report["runs"][name].append(run)
        _, data_args, _ = train.parse_arguments(["--output_dir", str(Path(temporary) / "x"), *data])
        dataset = train.build_datasets(data_args)
        report["baseline"] = logistic_baseline(dataset, conditions=MODALITY_COMBINATIONS)
    report["seconds_total"] = time.perf_counter() - started
    report["machine"] = machine_info(args.threads)
    print(_tables(report))
    print(f"total {report['seconds_total'] / 60:.1f} min; command: {report['command']}")
    if args.output is not None:
        write_json_atomic(args.output, json.loads(json.dumps(report, default=float)))
    return report


def _tables(report: dict) -> str:
    rows = {
        f"{name} ({len(runs)} seeds)": [_condition_rows(run["results"]) for run in runs]
        for name, runs in report["runs"].items()
    }
    baseline = report["baseline"]["modality_combinations"]
    baseline_rows = {**baseline}
    baseline_rows["mean"] = {
        key: sum(row[key] for row in baseline.values()) / len(baseline)
        for key in ("f1_micro", "f1_macro")
    }
    rows_with_baseline = {**rows, "mean-pool + LogReg": [baseline_rows]}
    uncertainty_rows = {
        f"{name}: {UNCERTAINTY[name]}": [
            {c: {"auroc": r[c].get(UNCERTAINTY[name])} for c in r}
            for r in (_condition_rows(run["results"]) for run in runs)
        ]
        for name, runs in report["runs"].items()
    }
    return "\n\n".join(
        [
            _table("test micro-F1", rows_with_baseline, "f1_micro"),
            _table("test macro-F1", rows_with_baseline, "f1_macro"),
            _table("error AUROC", uncertainty_rows, "auroc"),
        ]
    )


if __name__ == "__main__":
    main()
