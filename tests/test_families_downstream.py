"""What the shared layer gives every family unchanged, checked on LSGMER and MCUR: LoRA adaptation
to a new label set through train.py, and (LSGMER) the label-embedding update kept identical
across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from .conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402

TINY = {
    "lsgmer": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "lse_heads": 2,
    },
    "mcur": {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "encoder_layers": 1,
        "proj_dim": 8,
    },
}


def arguments(model_type, output_dir, *extra, model=True, epochs=1):
    return [
        "--output_dir", str(output_dir),
        "--synthetic_train_size", "64",
        "--synthetic_validation_size", "32",
        "--synthetic_test_size", "32",
        "--synthetic_length", "5",
        "--synthetic_dims", "12,6,5",
        *(["--model_type", model_type, "--config_overrides", json.dumps(TINY[model_type])]
          if model else []),
        "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", "16",
        "--evaluate_modality_combinations", "false",
        "--disable_tqdm", "true",
        "--use_cpu", "true",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("model_type", ["lsgmer", "mcur"])
def test_lora_adapts_a_trained_folder_to_a_new_label_set(tmp_path, model_type):
    from transformers import AutoModelForSequenceClassification

    from mmer.lora import load_adapted, trainable_fraction

    base_dir = tmp_path / "base"
    train.main(arguments(model_type, base_dir))
    adapted_dir = tmp_path / "adapted"
    adapt = arguments(
        model_type, adapted_dir, "--model_name_or_path", str(base_dir), "--use_lora", "true",
        "--merge_lora", "true", "--lora_r", "2", "--synthetic_num_labels", "4",
        "--synthetic_seed", "5", model=False,
    )  # fmt: skip
    trainer, _ = train.run(*train.parse_arguments(adapt))
    assert trainer.model.base_model.model.config.model_type == model_type
    assert 0.0 < trainable_fraction(trainer.model) < 1.0
    assert (adapted_dir / "adapter" / "adapter_model.safetensors").is_file()

    adapted = load_adapted(base_dir, adapted_dir / "adapter").eval()
    merged = AutoModelForSequenceClassification.from_pretrained(
        adapted_dir, trust_remote_code=True
    ).eval()
    assert merged.config.num_labels == 4 and merged.config.model_type == model_type
    assert not any("lora" in name for name, _ in merged.named_parameters())
    generator = torch.Generator().manual_seed(0)
    inputs = {
        f"{modality}_features": torch.randn(3, 5, dim, generator=generator)
        for modality, dim in (("text", 12), ("audio", 6), ("visual", 5))
    }
    with torch.inference_mode():
        difference = (adapted(**inputs).scores - merged(**inputs).scores).abs().max().item()
    assert difference <= 1e-5


#: Each process trains (no reloading of rank 0's best checkpoint at the end, which would make the
#: ranks agree whatever the update did), then saves LSGMER's label embeddings before and after.
LSGMER_RANK_DRIVER = """
import sys, torch
from transformers import TrainerCallback
sys.path.insert(0, {repo!r})
import train

class Initial(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.labels = model.lsgmer.label_embeddings.weight.detach().cpu().clone()

initial = Initial()
trainer, results = train.run(*train.parse_arguments(sys.argv[1:]), extra_callbacks=(initial,))
rank = trainer.args.process_index
torch.save({{"labels": trainer.model.lsgmer.label_embeddings.weight.detach().cpu(),
             "initial": initial.labels, "world": trainer.args.world_size}},
           {folder!r} + f"/rank{{rank}}.pt")
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_keep_identical_lsgmer_label_embeddings(tmp_path):
    """DDP does not broadcast buffers here (`ddp_broadcast_buffers=False`) and each rank sees other
    samples; the prototype update all-reduces its class sums, so every process holds the same
    label embeddings."""
    driver = tmp_path / "driver.py"
    driver.write_text(LSGMER_RANK_DRIVER.format(repo=str(REPO_ROOT), folder=str(tmp_path)))
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    launcher = ["torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
    run_arguments = arguments(
        "lsgmer", tmp_path / "out", "--load_best_model_at_end", "false", "--save_strategy", "no",
        "--eval_strategy", "no", epochs=2,
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", *launcher, str(driver), *run_arguments],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    states = [tmp_path / f"rank{rank}.pt" for rank in (0, 1)]
    assert all(path.exists() for path in states), result.stderr[-4000:]
    first, second = (torch.load(path, weights_only=True) for path in states)
    assert first["world"] == second["world"] == 2
    assert torch.equal(first["initial"], second["initial"])
    assert not torch.allclose(first["labels"], first["initial"])  # the update ran
    assert torch.equal(first["labels"], second["labels"])
