"""Print how far this LDDU is from the authors' code on their own weights and inputs.

    python benchmarks/parity_report.py [--fixtures ../shared/fixtures/lddu-reference] [--output parity.json]

For each fixture folder: the max absolute difference of every eval-mode forward tensor; for the
`small` folder also each training loss term, the queue after the step, and the worst gradient
(absolute, and relative to the reference gradient's magnitude). The tests in
`tests/test_parity.py` assert the tolerances (1e-5 forward and losses, gradients 1e-4 relative or
1e-6 absolute); this script prints the measured figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from dataset_scripts.io import check_output_file, write_json_atomic  # noqa: E402
from modeling_lddu.convert_original_checkpoint import (  # noqa: E402
    DEAD_PREFIXES,
    convert_original_checkpoint,
    convert_original_state_dict,
    load_original_state_dict,
)


def _inputs(folder: Path) -> tuple[dict, torch.Tensor]:
    raw = load_file(str(folder / "inputs.safetensors"))
    inputs = {f"{m}_features": raw[m] for m in ("text", "audio", "visual")}
    inputs.update({f"{m}_mask": raw[f"{m}_mask"] for m in ("text", "audio", "visual")})
    return inputs, raw["labels"]


def forward_report(folder: Path) -> dict[str, float]:
    model = convert_original_checkpoint(folder / "reference_state.safetensors").eval()
    inputs, _ = _inputs(folder)
    expected = load_file(str(folder / "forward_outputs.safetensors"))
    with torch.no_grad():
        output = model(**inputs)
    ours = {
        "final_scores": output.scores,
        "common_result (gate)": output.semantic_scores,
        "mus_result": output.mean_scores,
        "stds_result": output.spread_scores,
    }
    names = {"final_scores": "final_scores", "common_result (gate)": "common_result"}
    for index, modality in enumerate(("visual", "audio", "text")):
        ours[f"mu_{modality}"] = output.means[:, index]
        ours[f"std_{modality}"] = output.spreads[:, index]
        ours[f"label_wise_{modality}"] = output.label_features[:, index]
    return {
        key: (value - expected[names.get(key, key)]).abs().max().item()
        for key, value in ours.items()
    }


def training_report(folder: Path) -> dict[str, float]:
    state_dict = load_original_state_dict(folder / "reference_state.safetensors")
    model = convert_original_checkpoint(folder / "reference_state.safetensors").train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.0
    inputs, labels = _inputs(folder)
    expected = load_file(str(folder / "loss_outputs.safetensors"))
    output = model(**inputs, labels=labels)
    report = {
        "total_loss": abs(output.loss.item() - expected["total_loss"].item()),
        "common_bce (semantic)": abs(output.semantic_loss.item() - expected["common_bce"].item()),
        "final_bce (fused)": abs(output.fused_loss.item() - expected["final_bce"].item()),
        "cdl (contrastive)": abs(output.contrastive_loss.item() - expected["cdl_loss"].item()),
        "crl (calibration)": abs(output.calibration_loss.item() - expected["crl_loss"].item()),
        "queue after the step": (model.contrastive_memory.queue - expected["queue_after"])
        .abs()
        .max()
        .item(),
    }
    output.loss.backward()
    grads = load_file(str(folder / "loss_grads.safetensors"))
    extra = {
        k: v
        for k, v in state_dict.items()
        if k in ("queue", "queue_label", "queue_ptr") or k.startswith(DEAD_PREFIXES)
    }
    reference, _ = convert_original_state_dict({**grads, **extra}, model.config)
    worst_absolute = worst_relative = 0.0
    for name, parameter in model.named_parameters():
        difference = (parameter.grad - reference[name]).abs()
        worst_absolute = max(worst_absolute, difference.max().item())
        # Relative error only where the gradient is not zero in exact arithmetic: the attention key
        # biases' gradients vanish (softmax ignores a per-row constant) and hold rounding noise.
        scale = reference[name].abs().max().item()
        if scale > 1e-6:
            worst_relative = max(worst_relative, difference.max().item() / scale)
    report["gradient, worst absolute"] = worst_absolute
    report["gradient, worst relative (tensors with max |grad| > 1e-6)"] = worst_relative
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fixtures", default=str(REPO_ROOT.parent / "shared" / "fixtures" / "lddu-reference")
    )
    parser.add_argument("--output", default=None, help="also write the figures as JSON")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing --output file."
    )
    args = parser.parse_args()
    check_output_file(args.output, overwrite=args.overwrite)
    fixtures = Path(args.fixtures)
    torch.set_num_threads(2)
    results = {
        "forward_small": forward_report(fixtures / "small"),
        "forward_paper": forward_report(fixtures / "paper"),
        "training_small": training_report(fixtures / "small"),
    }
    print("command: python " + " ".join(sys.argv))
    for section, figures in results.items():
        print(f"\n{section}: max |ours - authors'|")
        for key, value in figures.items():
            print(f"  {key:<60}{value:.2e}")
    if args.output:
        write_json_atomic(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
