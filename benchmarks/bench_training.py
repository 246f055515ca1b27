"""Training and inference speed of a model family on this machine, at its default size.

The model is the family's classification model with its config's defaults (``--model_type``;
LDDU by default: ``LDDUForEmotionRecognition(LDDUConfig())``, text 768 / audio 74 / visual 35,
hidden 256, 3 layers per encoder, latent 128, queue 8192, the paper configuration), fed random batches of ``--batch_size`` samples
with ``--length`` frames per modality, in float32 on ``--threads`` CPU threads. Each phase runs in
its own fresh process, so that peak memory figures do not contaminate each other:

* ``train``: ``model.train()``, labels given, forward + backward + gradient clipping (norm 1, as
  the authors' loop) + AdamW step. Warm-up steps first fill the queue (``ceil(8192 / (18 B))``
  steps) and build the contrastive statistics; then ``--repeats`` timings of ``--steps`` steps.
* ``eval``: ``model.eval()`` under ``torch.inference_mode()``, no labels.
* ``train_reference`` (``--reference_loss``): ``train`` with the direct ``N x N`` contrastive loss
  (``LDDUConfig(contrastive_implementation="direct")``): the before figure.
* ``train_compiled`` / ``eval_compiled`` (``--compile``): the same with ``torch.compile(model)``.

Per phase: samples/s (median over repeats), peak resident memory of the process (``VmHWM``, i.e.
``ru_maxrss``), and the achieved GFLOP/s: matmul/attention FLOPs of one step counted with
``torch.utils.flop_counter.FlopCounterMode`` divided by the median step time. An fp32 matmul
(2048^3) is timed in the same run for comparison.

Contention: on a shared machine other processes slow OpenMP down enormously (a thread that is
descheduled makes its partner wait a whole scheduler slice at every barrier). Each timed repeat
therefore also records the CPU time that *other* processes used meanwhile (system busy time from
``/proc/stat`` minus this process's CPU time, as a fraction of the machine); the table gives the
median over all repeats and over the "quiet" repeats (others below ``--quiet_fraction``).
``--wait_idle SECONDS`` waits (at most that long) for an idle machine before each phase.

Usage::

    python benchmarks/bench_training.py --output bench_training.json
    python benchmarks/bench_training.py --reference_loss --output bench_training.json  # + before
    python benchmarks/bench_training.py --batch_size 8 --steps 2 --repeats 2            # smoke run
    python benchmarks/bench_training.py --model_type lsgmer --output bench_lsgmer.json  # LSGMER
    python benchmarks/bench_training.py --phases eval,eval_compiled                     # a subset

Not part of the test suite. Other processes on the machine distort the figures: the load average
is recorded before and after; rerun when it is high.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
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

#: The authors' code on this machine type (reference-lddu.md §9), for the table.
AUTHORS = {"train": 11.0, "eval": 220.0, "train_peak_mb": 7300.0, "eval_peak_mb": 460.0}
PHASES = ("train", "eval", "train_reference", "train_compiled", "eval_compiled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model_type",
        default="lddu",
        help="The family (lddu, lsgmer, ...), at its config's default size.",
    )
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--length", type=int, default=50, help="Frames per modality.")
    parser.add_argument("--steps", type=int, default=5, help="Steps per timed repeat.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats (median reported).")
    parser.add_argument("--eval_steps", type=int, default=20, help="Eval batches per repeat.")
    parser.add_argument(
        "--warmup_steps",
        type=int,
        default=None,
        help="Training warm-up steps (default: enough to fill the queue, plus one).",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reference_loss",
        action="store_true",
        help="Also time training with the direct N x N contrastive loss (the before figure).",
    )
    parser.add_argument(
        "--reference_steps", type=int, default=2, help="Steps per repeat of train_reference."
    )
    parser.add_argument(
        "--reference_repeats", type=int, default=3, help="Repeats of train_reference."
    )
    parser.add_argument(
        "--compile", action="store_true", help="Also time torch.compile(model) variants."
    )
    parser.add_argument(
        "--phases",
        default=None,
        help=f"Comma-separated phases to run instead of the flags' selection, from {', '.join(PHASES)}.",
    )
    parser.add_argument("--matmul_size", type=int, default=2048)
    parser.add_argument(
        "--wait_idle",
        type=float,
        default=0.0,
        help="Wait at most this many seconds for an idle machine before each phase.",
    )
    parser.add_argument(
        "--quiet_fraction",
        type=float,
        default=0.1,
        help="A repeat is quiet when other processes used less than this fraction of the CPUs.",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the figures.")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing --output file."
    )
    parser.add_argument("--phase", choices=PHASES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phase_output", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# One phase, in its own process
# ------------------------------------------------------------------------------------------------
def _peak_resident_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss as a fallback), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def _make_batches(config, batch_size: int, length: int, count: int, labels: bool) -> list[dict]:
    import torch

    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        batch = {}
        for modality in ("text", "audio", "visual"):
            dim = getattr(config, f"{modality}_dim")
            batch[f"{modality}_features"] = torch.randn(
                batch_size, length, dim, generator=generator
            )
            batch[f"{modality}_mask"] = torch.ones(batch_size, length, dtype=torch.long)
        if labels and config.problem_type == "single_label_classification":
            classes = torch.randint(config.num_labels, (batch_size,), generator=generator)
            batch["labels"] = torch.nn.functional.one_hot(classes, config.num_labels).float()
        elif labels:
            batch["labels"] = (
                torch.rand(batch_size, config.num_labels, generator=generator) < 0.3
            ).float()
        batches.append(batch)
    return batches


# Over 80 lines: one phase's setup, warm-up, timed repeats and memory reading stay in one function
# so that exactly what is inside the timed region can be read in one place.
def run_phase(args: argparse.Namespace) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import modeling_lddu  # noqa: F401  (registers the families)
    import modeling_lsgmer  # noqa: F401
    from mmer.family import ModelFamily

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    phase = args.phase
    training = phase.startswith("train")
    family = ModelFamily.from_model_type(args.model_type)
    if phase == "train_reference":
        config = family.config_class(contrastive_implementation="direct")
    else:
        config = family.config_class()  # the family's default (paper) size
    model = family.model_class(config)
    model.train(training)
    runner = torch.compile(model) if phase.endswith("compiled") else model
    batches = _make_batches(config, args.batch_size, args.length, 2, labels=training)
    batch_size = args.batch_size
    result = {"phase": phase}

    if training:
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
        parameters = [p for p in model.parameters() if p.requires_grad]

        def step(batch: dict) -> None:
            loss = runner(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        warmup = args.warmup_steps
        if warmup is None and hasattr(config, "queue_size"):  # fill the contrastive queue first
            rows_per_step = 3 * config.num_labels * batch_size
            warmup = math.ceil(config.queue_size / rows_per_step) + 1
        elif warmup is None:
            warmup = 3
        steps = args.reference_steps if phase == "train_reference" else args.steps
        repeats = args.reference_repeats if phase == "train_reference" else args.repeats
    else:

        @torch.inference_mode()
        def step(batch: dict) -> None:
            runner(**batch)

        warmup = 3
        steps, repeats = args.eval_steps, args.repeats

    start = time.perf_counter()
    for index in range(warmup):
        step(batches[index % len(batches)])
    result["warmup_seconds"] = time.perf_counter() - start
    result["warmup_steps"] = warmup

    step_times, foreign = [], []
    cpus = os.cpu_count() or 1
    for _ in range(repeats):
        busy_before, _ = _cpu_busy_seconds()
        own_before = time.process_time()
        start = time.perf_counter()
        for index in range(steps):
            step(batches[index % len(batches)])
        wall = time.perf_counter() - start
        busy = _cpu_busy_seconds()[0] - busy_before
        step_times.append(wall / steps)
        foreign.append(max(0.0, busy - (time.process_time() - own_before)) / (wall * cpus))
    median_step = statistics.median(step_times)
    quiet = [seconds for seconds, other in zip(step_times, foreign) if other < args.quiet_fraction]
    result.update(
        steps_per_repeat=steps,
        repeats=repeats,
        step_seconds=step_times,
        other_processes_cpu_fraction=foreign,
        median_step_seconds=median_step,
        samples_per_second=[batch_size / seconds for seconds in step_times],
        median_samples_per_second=batch_size / median_step,
        quiet_repeats=len(quiet),
        quiet_median_samples_per_second=batch_size / statistics.median(quiet) if quiet else None,
    )
    result["peak_resident_mb"] = _peak_resident_mb()  # before the FLOP count (it adds overhead)

    # FLOPs of one more step (matmuls, attention; not element-wise work).
    if phase.endswith("compiled"):
        flop_model = model  # count the eager graph: the same mathematics
    else:
        flop_model = runner
    counter = FlopCounterMode(display=False)
    with counter:
        if training:
            loss = flop_model(**batches[0]).loss
            loss.backward()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():  # FlopCounterMode's module hooks refuse inference tensors
                flop_model(**batches[0])
    flops = counter.get_total_flops()
    result.update(
        flops_per_step=flops,
        gflop_per_sample=flops / batch_size / 1e9,
        achieved_gflops=flops / median_step / 1e9,
    )
    return result


# ------------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------------
def time_matmul(size: int, threads: int, repeats: int = 10) -> float:
    """Median fp32 GFLOP/s of a ``size^3`` matmul."""
    import torch

    torch.set_num_threads(threads)
    left, right = torch.randn(size, size), torch.randn(size, size)
    left @ right
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        left @ right
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def _load_average() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def wait_for_idle(max_seconds: float, busy_fraction: float = 0.1) -> float:
    """Wait (at most ``max_seconds``) until the machine is idle for 3 s; returns the busy fraction
    of the last 3 s."""
    deadline = time.monotonic() + max_seconds
    while True:
        busy_before, total_before = _cpu_busy_seconds()
        time.sleep(3.0)
        busy, total = _cpu_busy_seconds()
        fraction = (busy - busy_before) / max(total - total_before, 1e-9)
        if fraction < busy_fraction or time.monotonic() >= deadline:
            return fraction


def run_in_subprocess(args: argparse.Namespace, argv: list[str], phase: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "phase.json"
        command = [sys.executable, __file__, *argv, "--phase", phase, "--phase_output", str(output)]
        subprocess.run(command, check=True)
        return json.loads(output.read_text())


def format_table(report: dict) -> str:
    rows = [
        (
            "phase",
            "samples/s (median)",
            "quiet median (n)",
            "min..max",
            "step (s)",
            "peak RSS (MB)",
            "GFLOP/s",
            "others' CPU",
        ),
    ]
    for phase, result in report["phases"].items():
        samples = result["samples_per_second"]
        quiet = result["quiet_median_samples_per_second"]
        rows.append(
            (
                phase,
                f"{result['median_samples_per_second']:.1f}",
                f"{quiet:.1f} ({result['quiet_repeats']})" if quiet else "- (0)",
                f"{min(samples):.1f}..{max(samples):.1f}",
                f"{result['median_step_seconds']:.3f}",
                f"{result['peak_resident_mb']:.0f}",
                f"{result['achieved_gflops']:.1f}",
                f"{statistics.median(result['other_processes_cpu_fraction']):.0%}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    matmul = report["fp32_matmul_gflops"]
    lines.append("")
    lines.append(
        f"fp32 matmul {report['matmul_size']}^3 on {report['threads']} threads: "
        f"{statistics.median(matmul):.1f} GFLOP/s (runs: {', '.join(f'{m:.0f}' for m in matmul)})"
    )
    for phase, result in report["phases"].items():
        lines.append(
            f"{phase}: {result['gflop_per_sample']:.3f} GFLOP/sample counted "
            f"(matmul + attention), warm-up {result['warmup_steps']} steps"
        )
    phases = report["phases"]
    authors = report.get("model_type", "lddu") == "lddu"  # the authors' LDDU code only
    if authors and "train" in phases:
        lines.append(
            f"train vs the authors' ~{AUTHORS['train']:.0f} samples/s: "
            f"{phases['train']['median_samples_per_second'] / AUTHORS['train']:.1f}x"
        )
    if authors and "eval" in phases:
        lines.append(
            f"eval vs the authors' ~{AUTHORS['eval']:.0f} samples/s: "
            f"{phases['eval']['median_samples_per_second'] / AUTHORS['eval']:.2f}x"
        )
    if "train" in phases and "train_reference" in phases:
        lines.append(
            "fast vs direct contrastive loss (training): "
            f"{phases['train']['median_samples_per_second'] / phases['train_reference']['median_samples_per_second']:.1f}x"
        )
    lines.append(f"load average before/after: {report['load_before']} / {report['load_after']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.phase is not None:
        result = run_phase(args)
        args.phase_output.write_text(json.dumps(result))
        return 0

    import torch

    check_output_file(args.output, overwrite=args.overwrite)
    command = shlex.join([Path(sys.executable).name, *sys.argv[:1], *argv])
    phases = ["train", "eval"]
    if args.reference_loss:
        phases.append("train_reference")
    if args.compile:
        phases += ["train_compiled", "eval_compiled"]
    if args.phases is not None:
        phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
        unknown = sorted(set(phases) - set(PHASES))
        if unknown or not phases:
            raise SystemExit(f"--phases: unknown or no phases {unknown}; choose from {PHASES}")
    report = {
        "command": command,
        "model_type": args.model_type,
        "torch": torch.__version__,
        "cpu": _cpu_model(),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "length": args.length,
        "matmul_size": args.matmul_size,
        "load_before": _load_average(),
        "fp32_matmul_gflops": [time_matmul(args.matmul_size, args.threads)],
        "phases": {},
    }
    for phase in phases:
        if args.wait_idle > 0:
            busy = wait_for_idle(args.wait_idle)
            print(f"[bench_training] machine busy fraction before {phase}: {busy:.0%}", flush=True)
        print(f"[bench_training] running {phase} ...", flush=True)
        report["phases"][phase] = run_in_subprocess(args, argv, phase)
        report["fp32_matmul_gflops"].append(time_matmul(args.matmul_size, args.threads))
    report["load_after"] = _load_average()
    table = format_table(report)
    print(f"\n$ {command}\n{table}")
    if args.output is not None:
        report["table"] = table
        write_json_atomic(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
