"""GoEmotions with contextual text features: LDDU on a frozen encoder's token states, and with the
encoder fine-tuned inside it, against LDDU on GloVe vectors, each beside the mean-pooled logistic
regression on the same features.

Both feature sets are built from the same comments, splits and labels
(`python -m dataset_scripts.goemotions`, with and without `--text_encoder packaged-minilm`:
all-MiniLM-L6-v2's last-layer token states, 384-d, one frame per word piece; GloVe 6B 50-d word
vectors). Each model then follows `benchmarks/bench_goemotions.py`'s protocol: the same small LDDU
configuration and training settings, checkpoint chosen on validation micro-F1, a global and a
per-label threshold tuned on validation and the reported variant chosen on validation (the higher
mean of micro- and macro-F1), the test split read once. The baselines are its one-vs-rest logistic
regressions on each comment's mean-pooled frames (four threshold variants; the table shows the
global-tuned and per-label-tuned ones). LDDU runs for several seeds (mean ± sample std); the
baselines are deterministic.

Two more rows put the encoder inside the model (`train.py --text_backbone`: the same tokens, and
at step 0 the same frames, as the frozen row) and train it end to end: fully, with its own
learning rate (5e-5; the head keeps 3e-3), or through LoRA adapters (peft, rank 8 on the
attention's query and value, learning rate 1e-3), for one epoch each: an epoch costs tens of
minutes on 2 CPU threads, so these rows see one pass over the data where the frozen rows train
the head for six.

The work folder keeps the built data, one JSON per finished run and the models, so an interrupted
run resumes where it stopped (rerun the same command); a run cut short inside an epoch starts that
seed again. The seed-0 model folders (``<work_dir>/lddu-<variant>-seed0``) of the MiniLM rows take
raw sentences in the pipeline.

Usage::

    pip install -e ".[glove,text]"
    python benchmarks/bench_text_features.py --work_dir work/text_features --output bench_text_features.json

Timings vary with the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from family_runs import REPO_ROOT, format_cell, load_bench_goemotions, machine_info  # noqa: E402

from dataset_scripts.io import check_output_file, write_json_atomic  # noqa: E402

FEATURES = {
    "glove": [],
    "minilm": ["--text_encoder", "packaged-minilm"],
}
DISPLAY = {"glove": "GloVe 50-d word vectors", "minilm": "MiniLM-L6 token states"}
#: The LDDU rows: the data they read, what train.py is told beside the shared protocol, and the
#: training settings that differ. The fine-tuned rows put MiniLM inside the model
#: (`--text_backbone`, the same tokens and frames as the frozen row at step 0) and train it for
#: one epoch (about 20 minutes of 2 CPU threads each; the frozen rows train 6 epochs of the head).
VARIANTS = {
    "glove": {"data": "glove", "arguments": [], "training": {}},
    "minilm": {"data": "minilm", "arguments": [], "training": {}},
    "minilm-finetuned": {
        "data": "minilm",
        "arguments": [
            "--text_backbone", "--train_text_backbone", "--text_backbone_learning_rate", "5e-5",
        ],
        "training": {"num_train_epochs": 1},
    },
    "minilm-lora": {
        "data": "minilm",
        "arguments": ["--text_backbone", "--use_lora", "--text_backbone_learning_rate", "1e-3"],
        "training": {"num_train_epochs": 1},
    },
}  # fmt: skip
VARIANT_DISPLAY = {
    "glove": "GloVe 50-d word vectors",
    "minilm": "MiniLM-L6 token states (frozen)",
    "minilm-finetuned": "MiniLM-L6 fine-tuned (1 epoch)",
    "minilm-lora": "MiniLM-L6 + LoRA r=8 (1 epoch)",
}
#: The GoEmotions paper's fine-tuned BERT-base on the Ekman grouping (Demszky et al., 2020):
#: macro-F1 .64 on test. Not a result of this repository; shown as the anchor.
PAPER_ANCHOR_MACRO_F1 = 0.64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work_dir", type=Path, required=True, help="Data, runs, models; reused.")
    parser.add_argument(
        "--source_dir",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "goemotions-ekman",
        help="GoEmotions TSV folder.",
    )
    parser.add_argument("--seeds", default="0,1,2", help="LDDU training seeds.")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"LDDU rows to run, some of {', '.join(VARIANTS)} (each brings its data's baseline).",
    )
    parser.add_argument("--num_train_epochs", type=float, default=None, help="Smoke runs.")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Smoke runs.")
    parser.add_argument("--output", type=Path, default=None, help="Write the results as JSON.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads.")
    return parser.parse_args(argv)


def _cached(path: Path, compute, settings: dict) -> dict:
    """The JSON at ``path`` if it was computed with the same ``settings``, else ``compute()``
    written there first (atomically). A file from other settings (a smoke run) is refused, never
    reported under this command."""
    settings = json.loads(json.dumps(settings, default=str))
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("settings") != settings:
            raise SystemExit(
                f"{path} holds a run with other settings ({stored.get('settings')}); move it away "
                "or use another --work_dir."
            )
        return stored["result"]
    result = json.loads(json.dumps(compute(), default=float))
    write_json_atomic(path, {"settings": settings, "result": result})
    return result


def build_data(name: str, args, work: Path) -> tuple[Path, float]:
    """The prepared folder of one feature set (built once, by the package's own command)."""
    folder = work / f"data-{name}"
    started = time.perf_counter()
    if not (folder / "dataset_dict.json").is_file():
        command = [
            sys.executable, "-m", "dataset_scripts.goemotions", "--source_dir",
            str(args.source_dir), "--output", str(folder), *FEATURES[name],
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=REPO_ROOT)
    return folder, time.perf_counter() - started


def feature_data(name: str, args, work: Path, bench) -> tuple[Path, dict]:
    """The data folder of one feature set (subset for smoke runs) and its baseline."""
    from dataset_scripts.loading import load_label_names
    from dataset_scripts.raw_features import PROCESSOR_SETTINGS_FILE

    data_dir, build_seconds = build_data(name, args, work)
    if args.max_train_samples is not None:
        full = data_dir
        data_dir = bench.prepare_data(
            argparse.Namespace(data_dir=full, source_dir=None),
            work / f"subset-{name}",
            args.max_train_samples,
        )
        if (full / PROCESSOR_SETTINGS_FILE).is_file() and data_dir != full:
            shutil.copyfile(full / PROCESSOR_SETTINGS_FILE, data_dir / PROCESSOR_SETTINGS_FILE)
    label_names = load_label_names(data_dir)
    baseline = _cached(
        work / f"baseline-{name}.json",
        lambda: bench.run_baseline(data_dir, label_names, 0),
        {"data_dir": data_dir, "max_train_samples": args.max_train_samples},
    )
    return data_dir, {
        "data_dir": str(data_dir),
        "build_seconds": build_seconds,
        "baseline": baseline,
        "label_names": label_names,
    }


def run_variant(name: str, args, work: Path, seeds: list[int], data: dict, bench) -> list[dict]:
    """The LDDU runs of one row, one per seed (each cached in the work folder)."""
    variant = VARIANTS[name]
    training = {**bench.FULL_TRAINING, **variant["training"]}
    for key in ("num_train_epochs", "max_train_samples"):
        if getattr(args, key) is not None:
            training[key] = getattr(args, key)
    data_dir = Path(data["data_dir"])
    runs = []
    for seed in seeds:
        model_dir = work / f"lddu-{name}-seed{seed}"
        settings = {"data_dir": data_dir, "training": training, "config": bench.FULL_CONFIG}
        if variant["arguments"]:
            settings["arguments"] = variant["arguments"]
        runs.append(
            _cached(
                work / f"lddu-{name}-seed{seed}.json",
                lambda model_dir=model_dir, seed=seed: bench.run_lddu(
                    data_dir,
                    model_dir,
                    bench.FULL_CONFIG,
                    training,
                    seed,
                    data["label_names"],
                    extra_arguments=tuple(variant["arguments"]),
                ),
                settings,
            )
        )
    return runs


def format_table(report: dict) -> str:
    header = f"{'test split':<58}{'micro-F1':>18}{'macro-F1':>18}"
    lines = [header, "-" * len(header)]

    def row(name: str, micro: list, macro: list) -> None:
        lines.append(f"{name:<58}{format_cell(micro):>18}{format_cell(macro):>18}")

    for name, runs in report["lddu"].items():
        chosen = [run["variants"][run["chosen"]]["test"] for run in runs]
        row(
            f"LDDU on {VARIANT_DISPLAY[name]} ({len(chosen)} seeds)",
            [m["f1_micro"] for m in chosen],
            [m["f1_macro"] for m in chosen],
        )
    for name, result in report["features"].items():
        for variant in ("global_tuned", "per_label_tuned"):
            metrics = result["baseline"]["variants"][variant]["test"]
            row(
                f"{DISPLAY[name]} mean + LogReg ({variant})",
                [metrics["f1_micro"]],
                [metrics["f1_macro"]],
            )
    lines.append(
        f"{'fine-tuned BERT-base, GoEmotions paper (not ours)':<58}{'':>18}"
        f"{PAPER_ANCHOR_MACRO_F1:>18.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    check_output_file(args.output, overwrite=args.overwrite)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or not names:
        raise SystemExit(f"--variants: unknown or none {unknown}; choose from {list(VARIANTS)}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench = load_bench_goemotions()
    started = time.perf_counter()
    features = {}
    for data_name in dict.fromkeys(VARIANTS[name]["data"] for name in names):
        features[data_name] = feature_data(data_name, args, args.work_dir, bench)[1]
    report = {
        "command": "python benchmarks/bench_text_features.py " + shlex.join(argv),
        "seeds": seeds,
        "lddu_config": bench.FULL_CONFIG,
        "variants": {name: VARIANTS[name] for name in names},
        "features": features,
        "lddu": {
            name: run_variant(
                name, args, args.work_dir, seeds, features[VARIANTS[name]["data"]], bench
            )
            for name in names
        },
    }
    report["seconds_this_invocation"] = time.perf_counter() - started
    report["machine"] = machine_info(args.threads)
    print(format_table(report))
    print(
        f"{report['seconds_this_invocation'] / 60:.1f} min in this invocation "
        f"(finished runs are reused); command: {report['command']}"
    )
    if args.output is not None:
        write_json_atomic(args.output, report)
    return report


if __name__ == "__main__":
    main()
