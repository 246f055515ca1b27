"""train.py end to end on tiny synthetic data: the output folder, the card, publishing (HfApi mocked
at the network boundary), remote-code loading in a fresh process, the endpoint handler, resume,
two processes, LoRA adaptation."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from .conftest import REPO_ROOT, run_without_the_package

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402

TINY_MODEL = {
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "text_num_layers": 1,
    "audio_num_layers": 1,
    "visual_num_layers": 1,
    "label_attention_dim": 32,
    "latent_hidden_sizes": [16],
    "latent_size": 8,
    "classifier_hidden_size": 8,
    "queue_size": 256,
}


def tiny_arguments(output_dir, *extra, model=None, epochs=2):
    return [
        "--output_dir", str(output_dir),
        "--synthetic_train_size", "96",
        "--synthetic_validation_size", "48",
        "--synthetic_test_size", "48",
        "--synthetic_length", "6",
        "--synthetic_dims", "16,6,5",
        *(["--config_overrides", json.dumps(model or TINY_MODEL)] if model is not False else []),
        "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", "16",
        "--per_device_eval_batch_size", "32",
        "--logging_steps", "2",
        "--disable_tqdm", "true",
        "--use_cpu", "true",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run with --push_to_hub, HfApi's network calls replaced by recorders."""
    output_dir = tmp_path_factory.mktemp("run") / "lddu-tiny"
    commits = []

    def fake_create_commit(self, repo_id, operations, **kwargs):
        commits.append((repo_id, sorted(op.path_in_repo for op in operations)))
        return mock.MagicMock(commit_url="https://example.invalid/commit")

    with (
        mock.patch.object(
            HfApi, "create_repo", return_value=mock.MagicMock(repo_id="org/lddu-tiny")
        ),
        mock.patch.object(HfApi, "create_commit", fake_create_commit),
        mock.patch.object(
            HfApi, "whoami", return_value={"name": "user", "orgs": [{"name": "org"}]}
        ),
        mock.patch.object(HfApi, "_validate_yaml", return_value=None),  # POSTs the card to the Hub
        # With hf_xet installed, upload_folder takes a multi-commit path; keep the one-commit path.
        mock.patch("huggingface_hub.hf_api.is_xet_available", return_value=False),
    ):
        results = train.main(
            tiny_arguments(output_dir, "--push_to_hub", "true", "--hub_model_id", "org/lddu-tiny")
        )
    return output_dir, results, commits


def test_output_folder_is_complete(trained):
    output_dir, results, _ = trained
    expected = {
        "config.json", "model.safetensors", "preprocessor_config.json", "README.md",
        "configuration_lddu.py", "modeling_lddu.py", "contrastive_lddu.py",
        "contrastive_cache_lddu.py",
        "feature_extraction_lddu.py", "pipeline_lddu.py", "handler.py", "requirements.txt",
        "all_results.json", "images/training_curves.png", "images/per_emotion_f1.png",
        "images/reliability_diagram.png",
    }  # fmt: skip
    present = {
        str(path.relative_to(output_dir)) for path in output_dir.rglob("*") if path.is_file()
    }
    assert expected <= present, expected - present
    # Every family registers the same pipeline task; the folder holds only its own family's code.
    foreign = {name for name in present if name.endswith(".py") and "lddu" not in name}
    assert foreign == {"handler.py"}, foreign
    assert any(name.startswith("examples/") and name.endswith(".npz") for name in present)
    assert not (output_dir / ".staging").exists()
    config = json.loads((output_dir / "config.json").read_text())
    assert (
        config["custom_pipelines"]["multimodal-emotion-recognition"]["impl"]
        == "pipeline_lddu.LDDUEmotionPipeline"
    )
    assert (
        config["auto_map"]["AutoModelForSequenceClassification"]
        == "modeling_lddu.LDDUForEmotionRecognition"
    )
    # The threshold tuned on validation is the one the saved model carries.
    assert results["thresholds"]["tuned_on"] == "validation"
    assert config["decision_threshold"] == pytest.approx(results["thresholds"]["value"])
    saved = json.loads((output_dir / "all_results.json").read_text())
    assert saved["test"]["f1_micro"] == pytest.approx(results["test"]["f1_micro"])
    assert set(saved["modality_combinations"]) == {"t", "a", "v", "ta", "tv", "av", "tav"}
    assert 0.0 <= saved["uncertainty"]["expected_calibration_error"] <= 1.0
    for png in ("training_curves", "per_emotion_f1", "reliability_diagram"):
        assert (output_dir / "images" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_card_holds_only_measured_numbers(trained):
    output_dir, results, _ = trained
    card = ModelCard.load(output_dir / "README.md")
    from mmer.model_card import _KNOWN_METRICS

    by_type = {(r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    key_of = {(kind, config): key for key, (kind, _, config) in _KNOWN_METRICS.items()}
    eval_results = {key_of.get(pair, pair[0]): value for pair, value in by_type.items()}
    assert eval_results["f1_micro"] == pytest.approx(results["test"]["f1_micro"])
    assert eval_results["f1_macro"] == pytest.approx(results["test"]["f1_macro"])
    for name, value in eval_results.items():
        assert value == pytest.approx(results["test"][name]), name
    widget = card.data.widget
    assert widget and all(example["output"] for example in widget)
    # The widget outputs are what the saved model computes on the saved example inputs.
    assert widget[0]["output"] == results["widget_examples"][0]["output"]
    text = card.text
    assert "Synthetic" in text or "synthetic" in text
    assert "validation" in text
    assert "reliability_diagram.png" in text


def test_publishing_uploads_the_whole_folder(trained):
    output_dir, _, commits = trained
    assert len(commits) == 1
    repo_id, uploaded = commits[0]
    assert repo_id == "org/lddu-tiny"
    local = sorted(
        str(path.relative_to(output_dir)) for path in output_dir.rglob("*")
        if path.is_file() and not str(path.relative_to(output_dir)).startswith("checkpoints/")
    )  # fmt: skip
    assert uploaded == local
    assert {"handler.py", "pipeline_lddu.py", "preprocessor_config.json", "README.md"} <= set(
        uploaded
    )


def test_refuses_to_overwrite_an_output_folder(trained):
    output_dir, _, _ = trained
    with pytest.raises(FileExistsError, match="overwrite_output_dir"):
        train.main(tiny_arguments(output_dir))


def test_fresh_process_pipeline_feature_extractor_and_model(trained, tmp_path):
    output_dir, results, _ = trained
    example = output_dir / results["widget_examples"][0]["src"]
    script = f"""
        import json, numpy as np, torch
        from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline
        folder = {str(output_dir)!r}
        recognizer = pipeline("multimodal-emotion-recognition", model=folder, trust_remote_code=True)
        output = recognizer({str(example)!r})
        print("PIPELINE", json.dumps([[e["label"], round(e["score"], 4)] for e in output]))
        print("KEYS", json.dumps(sorted(output[0])))
        extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        with np.load({str(example)!r}) as archive:
            inputs = extractor(**{{k: archive[k] for k in archive.files}}, return_tensors="pt")
        with torch.inference_mode():
            scores = model(**inputs).scores[0]
        print("DIRECT", json.dumps(sorted(round(float(s), 4) for s in scores)))
        batch = recognizer([{str(example)!r}, {str(example)!r}], top_k=2)
        print("BATCH", len(batch), len(batch[0]))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    recorded = [
        [entry["label"], entry["score"]] for entry in results["widget_examples"][0]["output"]
    ]
    assert json.loads(lines["PIPELINE"]) == recorded
    assert json.loads(lines["KEYS"]) == ["label", "predicted", "score", "uncertainty"]
    assert json.loads(lines["DIRECT"]) == sorted(score for _, score in recorded)
    assert lines["BATCH"] == "2 2"


def _load_handler(folder):
    spec = importlib.util.spec_from_file_location("endpoint_handler", folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EndpointHandler(str(folder))


def test_endpoint_handler_good_and_bad_payloads(trained):
    output_dir, results, _ = trained
    handler = _load_handler(output_dir)
    with np.load(output_dir / results["widget_examples"][0]["src"]) as archive:
        sample = {key: archive[key].tolist() for key in archive.files}
    response = handler({"inputs": sample, "parameters": {"top_k": 2}})
    assert isinstance(response, list) and len(response) == 2
    assert {"label", "score", "predicted", "uncertainty"} == set(response[0])
    batch = handler({"inputs": [sample, {"text": sample["text"]}]})
    assert len(batch) == 2 and len(batch[1]) == 6
    bad_payloads = {
        "no inputs": ({"data": 1}, "'inputs' field"),
        "not an object": (["x"], "'inputs' field"),
        "inputs a string": ({"inputs": "hello"}, "inputs[0] must be an object"),
        "unknown modality": ({"inputs": {"smell": [[1.0]]}}, "Unknown input key"),
        "wrong dim": ({"inputs": {"text": [[1.0, 2.0]]}}, "text"),
        "wrong rank": ({"inputs": {"text": [1.0, 2.0]}}, "2-D"),
        "no modality": ({"inputs": {}}, "no modality"),
        "bad parameter": (
            {"inputs": sample, "parameters": {"temperature": 3}},
            "Unknown parameter",
        ),
        "bad top_k": ({"inputs": sample, "parameters": {"top_k": 0}}, "top_k"),
        "empty batch": ({"inputs": []}, "empty"),
    }
    for name, (payload, message) in bad_payloads.items():
        response = handler(payload)
        assert isinstance(response, dict) and "error" in response, name
        assert message in response["error"], (name, response["error"])


def test_resume_ends_like_an_uninterrupted_run(tmp_path):
    from transformers import TrainerCallback

    uninterrupted = train.main(tiny_arguments(tmp_path / "full", "--early_stopping_patience", "0"))

    class StopAfterFirstEpoch(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if state.epoch is not None and state.epoch >= 1:
                control.should_training_stop = True

    arguments = tiny_arguments(tmp_path / "resumed", "--early_stopping_patience", "0")
    trainer, _ = train.run(
        *train.parse_arguments(arguments), extra_callbacks=[StopAfterFirstEpoch()]
    )
    steps_per_epoch = trainer.state.global_step
    checkpoint = tmp_path / "resumed" / "checkpoints" / f"checkpoint-{steps_per_epoch}"
    assert checkpoint.is_dir()
    resumed = train.main([*arguments, "--resume_from_checkpoint", str(checkpoint)])
    for key in ("f1_micro", "f1_macro", "accuracy_jaccard", "hamming_loss"):
        assert resumed["test"][key] == pytest.approx(uninterrupted["test"][key], abs=1e-6), key
    assert resumed["thresholds"]["value"] == pytest.approx(uninterrupted["thresholds"]["value"])
    from safetensors.torch import load_file

    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    again = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for name, tensor in full.items():
        torch.testing.assert_close(again[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


#: Run by each process of a two-process test: train, then save what the test compares across ranks.
RANK_DRIVER = """
import sys, torch
sys.path.insert(0, {repo!r})
import train
trainer, results = train.run(*train.parse_arguments(sys.argv[1:]))
rank = trainer.args.process_index
memory = trainer.model.contrastive_memory
torch.save({{"queue": memory.queue.cpu(), "classes": memory.queue_classes.cpu(),
             "ptr": memory.queue_ptr.cpu(), "world": trainer.args.world_size,
             "results": results.get("num_samples"), "f1": results["test"]["f1_micro"],
             "threshold": results["thresholds"]["value"]}},
           {folder!r} + f"/rank{{rank}}.pt")
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
"""


def _run_two_ranks(tmp_path, launcher: list[str], arguments: list[str], **environment):
    """Launch train.py's run in two processes (`python -m <launcher> driver.py <arguments>`) and
    return the two ranks' saved states."""
    driver = tmp_path / "driver.py"
    driver.write_text(RANK_DRIVER.format(repo=str(REPO_ROOT), folder=str(tmp_path)))
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), **environment)
    result = subprocess.run(
        [sys.executable, "-m", *launcher, str(driver), *arguments],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    states = [tmp_path / f"rank{rank}.pt" for rank in (0, 1)]
    assert all(path.exists() for path in states), result.stderr[-4000:]
    return [torch.load(path, weights_only=True) for path in states]


def test_two_processes_keep_identical_queues(tmp_path):
    torchrun = ["torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    # Judge the run by what both ranks wrote (gloo teardown can abort after success; see docs).
    first, second = _run_two_ranks(tmp_path, torchrun, tiny_arguments(tmp_path / "out", epochs=1))
    assert first["world"] == second["world"] == 2
    assert torch.equal(first["queue"], second["queue"])
    assert torch.equal(first["classes"], second["classes"])
    assert torch.equal(first["ptr"], second["ptr"])
    # Each rank saw half of each batch; the queue holds rows of both (all-gather before enqueue).
    assert int(first["ptr"]) == (96 * 3 * 6) % 256
    assert first["results"]["test"] == 48 and first["results"]["validation"] == 48


def test_lora_adapts_to_a_new_label_set(tmp_path):
    from mmer.lora import load_adapted, trainable_fraction

    model = dict(TINY_MODEL, hidden_size=64, intermediate_size=64, label_attention_dim=64,
                 text_num_layers=2, audio_num_layers=2, visual_num_layers=2)  # fmt: skip
    base_dir = tmp_path / "base"
    train.main(tiny_arguments(base_dir, model=model, epochs=1))
    adapted_dir = tmp_path / "adapted"
    arguments = tiny_arguments(
        adapted_dir, "--model_name_or_path", str(base_dir), "--use_lora", "true", "--merge_lora",
        "true", "--lora_r", "2", "--synthetic_num_labels", "4", "--synthetic_seed", "5",
        model=False, epochs=1,
    )  # fmt: skip
    trainer, results = train.run(*train.parse_arguments(arguments))
    assert trainable_fraction(trainer.model) < 0.10
    assert results["test"]["f1_micro"] >= 0.0
    assert (adapted_dir / "adapter" / "adapter_model.safetensors").is_file()

    adapted = load_adapted(base_dir, adapted_dir / "adapter").eval()
    assert adapted.base_model.model.config.num_labels == 4
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(
        adapted_dir, trust_remote_code=True
    ).eval()
    assert merged.config.num_labels == 4
    assert not any("lora" in name for name, _ in merged.named_parameters())
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "text_features": torch.randn(5, 6, 16, generator=generator),
        "audio_features": torch.randn(5, 6, 6, generator=generator),
        "visual_features": torch.randn(5, 6, 5, generator=generator),
    }
    with torch.inference_mode():
        difference = (adapted(**inputs).scores - merged(**inputs).scores).abs().max().item()
    assert difference <= 1e-5


def test_bf16_mixed_precision_runs_with_fp32_losses(tmp_path):
    """--bf16 goes through Accelerate's autocast; the probability-space BCE must not trip it."""
    arguments = tiny_arguments(tmp_path / "bf16", "--bf16", "true", epochs=1)
    trainer, results = train.run(*train.parse_arguments(arguments))
    assert trainer.accelerator.mixed_precision == "bf16"
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(np.isfinite(losses))
    assert np.isfinite(results["test"]["f1_micro"])


def test_the_synthetic_preset_gives_defaults_that_arguments_override(tmp_path):
    model_args, data_args, training_args = train.parse_arguments(["--learning_rate", "0.01"])
    assert training_args.learning_rate == 0.01  # given
    assert training_args.num_train_epochs == 10  # from presets/synthetic.yaml
    assert training_args.per_device_train_batch_size == 32
    assert json.loads(model_args.config_overrides)["hidden_size"] == 128
    # From an argument file, the same rule.
    path = tmp_path / "args.yaml"
    path.write_text("num_train_epochs: 3\noutput_dir: somewhere\n")
    _, _, training_args = train.parse_arguments([str(path)])
    assert training_args.num_train_epochs == 3 and training_args.learning_rate == 5e-4
    # Other data, or a trained model: no preset, no architecture override.
    _, _, training_args = train.parse_arguments(["--dataset", "mosei", "--data_dir", "d"])
    assert training_args.num_train_epochs == 30 and training_args.learning_rate == 2e-4
    model_args, _, _ = train.parse_arguments(["--model_name_or_path", "some/model"])
    assert model_args.config_overrides is None


def _no_training(*args, **kwargs):
    raise AssertionError("a training step started")


@pytest.mark.parametrize(
    ("hub_arguments", "whoami", "message"),
    [
        (["--hub_token", "hf_bad"], "401", "token is missing or invalid"),
        (["--hub_model_id", "org/bad name!"], None, "not a valid repo id"),
        (["--hub_model_id", ""], None, "needs --hub_model_id"),
        (["--hub_model_id", "someone-else/model"], None, "cannot write to 'someone-else'"),
    ],
)
def test_push_to_hub_checks_token_and_repo_before_training(
    tmp_path, hub_arguments, whoami, message
):
    """Issue 11, item 11: a bad token or target repo stops the run before any training step."""
    from huggingface_hub.errors import HfHubHTTPError

    if whoami == "401":
        identity = mock.Mock(
            side_effect=HfHubHTTPError(
                "Invalid user token.", response=mock.MagicMock(status_code=401)
            )
        )
    else:
        identity = mock.Mock(return_value={"name": "user", "orgs": [{"name": "org"}]})
    if "--hub_model_id" not in hub_arguments:
        hub_arguments = [*hub_arguments, "--hub_model_id", "org/lddu-tiny"]
    arguments = tiny_arguments(tmp_path / "out", "--push_to_hub", "true", *hub_arguments, epochs=1)
    with (
        mock.patch.object(HfApi, "whoami", identity),
        mock.patch.object(HfApi, "create_repo", _no_training),
        mock.patch.object(train.EmotionTrainer, "train", _no_training),
    ):
        with pytest.raises(ValueError, match=message):
            train.main(arguments)
    assert not (tmp_path / "out").exists()


def test_fp16_on_the_cpu_stops_before_training(tmp_path):
    """Issue 11, item 6: --fp16 on a CPU would train in fp32 while the card said fp16."""
    with pytest.raises(ValueError, match="--fp16 needs a GPU"):
        train.parse_arguments(tiny_arguments(tmp_path / "fp16", "--fp16", "true"))


def test_card_records_the_precision_actually_used():
    """Issue 11, item 6: the card's mixed_precision row is what Accelerate autocast to."""
    arguments = train.parse_arguments(tiny_arguments("unused"))[2]
    config = train.transformers.PreTrainedConfig()
    for native_amp, mixed_precision, expected in [
        (False, "fp16", "no"),
        (True, "bf16", "bf16"),
        (False, "no", "no"),
    ]:
        trainer = mock.MagicMock()
        trainer.state.epoch = 1
        trainer.accelerator.native_amp = native_amp
        trainer.accelerator.mixed_precision = mixed_precision
        arguments.fp16 = mixed_precision == "fp16"
        values = train._hyperparameters(arguments, trainer, config)
        assert values["mixed_precision"] == expected, (native_amp, mixed_precision)


@pytest.mark.skipif(
    torch.accelerator.is_available() and torch.accelerator.device_count() < 2,
    reason="--multi_gpu --num_processes 2 on an accelerator machine needs two devices",
)
def test_accelerate_launch_as_the_readme_writes_it(tmp_path):
    """Issue 11, item 5: `accelerate launch --multi_gpu --num_processes 2 train.py ...` without
    --use_cpu trains as ONE two-process run, on GPUs or (gloo) on a machine without one."""
    arguments = tiny_arguments(tmp_path / "out", epochs=1)
    index = arguments.index("--use_cpu")
    del arguments[index : index + 2]  # the launcher's environment decides the device
    launch = ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--main_process_port", "29523"]
    first, second = _run_two_ranks(tmp_path, launch, arguments, HF_HOME=str(tmp_path / "hf"))
    assert first["world"] == second["world"] == 2
    assert torch.equal(first["queue"], second["queue"])
    assert torch.equal(first["classes"], second["classes"])
    assert first["f1"] == second["f1"] and first["threshold"] == second["threshold"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| processes | 2 |" in card.replace("  ", " ")


def _hub_mocks(commits):
    def fake_create_commit(self, repo_id, operations, **kwargs):
        commits.append((repo_id, sorted(op.path_in_repo for op in operations)))
        return mock.MagicMock(commit_url="https://example.invalid/commit")

    identity = {"name": "user", "orgs": [{"name": "org"}]}
    return (
        mock.patch.object(HfApi, "whoami", return_value=identity),
        mock.patch.object(HfApi, "create_repo", return_value=mock.MagicMock(repo_id="org/x")),
        mock.patch.object(HfApi, "create_commit", fake_create_commit),
        mock.patch.object(HfApi, "_validate_yaml", return_value=None),
        mock.patch("huggingface_hub.hf_api.is_xet_available", return_value=False),
    )


def test_lora_adapter_is_published_and_loads_with_peft(tmp_path, monkeypatch):
    """Issue 11, item 10: the unmerged adapter is published with a card naming its Hub base, its
    config records that base (not a relative path), it loads with plain peft on a base loaded by
    trust_remote_code, and a merged model's card carries base_model."""
    from mmer.lora import load_adapted

    base_dir = tmp_path / "base"
    train.main(tiny_arguments(base_dir, epochs=1))
    monkeypatch.chdir(tmp_path)  # the base as a relative path, as a user types it
    lora = ["--model_name_or_path", "base", "--use_lora", "true", "--lora_r", "2"]
    # A local base and no Hub id for it: refused before training.
    commits = []
    mocks = _hub_mocks(commits)
    with mocks[0], mocks[1], mocks[2], mocks[3], mocks[4]:
        with mock.patch.object(train.EmotionTrainer, "train", _no_training):
            with pytest.raises(ValueError, match="--base_model_id"):
                train.main(tiny_arguments("refused", *lora, "--push_to_hub", "true",
                                          "--hub_model_id", "org/adapter", model=False, epochs=1))  # fmt: skip
        train.main(
            tiny_arguments("adapted", *lora, "--push_to_hub", "true", "--hub_model_id",
                           "org/adapter", "--base_model_id", "org/lddu-base", model=False, epochs=1)
        )  # fmt: skip
    adapter_dir = tmp_path / "adapted" / "adapter"
    assert len(commits) == 1 and commits[0][0] == "org/adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(commits[0][1])
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "org/lddu-base"
    assert ModelCard.load(adapter_dir / "README.md").data.base_model == "org/lddu-base"

    generator = torch.Generator().manual_seed(0)
    inputs = {
        "text_features": torch.randn(3, 6, 16, generator=generator),
        "audio_features": torch.randn(3, 6, 6, generator=generator),
        "visual_features": torch.randn(3, 6, 5, generator=generator),
    }
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.inference_mode():
        expected = load_adapted(base_dir, adapter_dir).eval()(**inputs).scores
    script = f"""
        import json, torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification
        base = AutoModelForSequenceClassification.from_pretrained({str(base_dir)!r}, trust_remote_code=True)
        model = PeftModel.from_pretrained(base, {str(adapter_dir)!r}).eval()
        with torch.inference_mode():
            scores = model(**torch.load({str(tmp_path / "inputs.pt")!r}, weights_only=True)).scores
        print("SCORES", json.dumps(scores.tolist()))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("SCORES "))
    torch.testing.assert_close(torch.tensor(json.loads(line[7:])), expected, rtol=0, atol=1e-5)

    # Merged, from a local base without a Hub id: the adapter records the absolute path; with
    # --base_model_id, the merged card carries base_model.
    train.main(tiny_arguments("merged", *lora, "--merge_lora", "true", "--base_model_id",
                              "org/lddu-base", model=False, epochs=1))  # fmt: skip
    assert ModelCard.load(tmp_path / "merged" / "README.md").data.base_model == "org/lddu-base"
    train.main(tiny_arguments("local", *lora, model=False, epochs=1))
    recorded = json.loads((tmp_path / "local" / "adapter" / "adapter_config.json").read_text())
    assert recorded["base_model_name_or_path"] == str(base_dir.resolve())


def test_the_card_describes_the_data_trained_on_not_the_flag(tmp_path, caplog):
    """Synthetic data given as `--dataset m3ed`: the card must not claim M3ED's features."""
    from dataset_scripts.saving import save_prepared
    from dataset_scripts.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(
        num_train=48, num_validation=24, num_test=24, seed=1, text_length=4, audio_length=4,
        visual_length=4, text_dim=16, audio_dim=6, visual_dim=5,
    )  # fmt: skip
    save_prepared(data, tmp_path / "data")
    output_dir = tmp_path / "run"
    arguments = tiny_arguments(
        output_dir, "--dataset", "m3ed", "--data_dir", str(tmp_path / "data")
    )
    with caplog.at_level("WARNING", logger="train"):
        train.main([*arguments, "--num_train_epochs", "1"])
    card = (output_dir / "README.md").read_text()
    assert "wav2vec" not in card and "M3ED" not in card
    assert "Synthetic" in card
    assert any("--dataset m3ed" in record.getMessage() for record in caplog.records)


def test_the_card_states_the_endpoint_limits(trained):
    from mmer.templates.handler import DEFAULT_MAX_FRAMES, DEFAULT_MAX_SAMPLES

    text = (trained[0] / "README.md").read_text()
    assert f"more than {DEFAULT_MAX_SAMPLES} samples" in text
    assert f"{DEFAULT_MAX_FRAMES} frames" in text


def test_a_crashed_run_keeps_its_checkpoints_and_resumes_like_an_uninterrupted_run(tmp_path):
    from transformers import TrainerCallback

    uninterrupted = train.main(tiny_arguments(tmp_path / "full", "--early_stopping_patience", "0"))

    class CrashAfterFirstEpoch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt  # Ctrl-C right after the first checkpoint

    output_dir = tmp_path / "crashed"
    arguments = tiny_arguments(output_dir, "--early_stopping_patience", "0")
    with pytest.raises(KeyboardInterrupt):
        train.run(*train.parse_arguments(arguments), extra_callbacks=[CrashAfterFirstEpoch()])
    assert not output_dir.exists()  # nothing half-written in place of a model
    kept = tmp_path / "crashed.interrupted-1"
    checkpoints = sorted((kept / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1
    resumed = train.main([*arguments, "--resume_from_checkpoint", str(checkpoints[0])])
    for key in ("f1_micro", "f1_macro", "accuracy_jaccard", "hamming_loss"):
        assert resumed["test"][key] == pytest.approx(uninterrupted["test"][key], abs=1e-6), key
    assert (output_dir / "model.safetensors").is_file()


def test_a_data_dir_with_the_synthetic_dataset_is_refused(tmp_path):
    """--data_dir alone would otherwise train on generated data and ignore the folder."""
    arguments = tiny_arguments(tmp_path / "out", "--data_dir", str(tmp_path / "prepared"))
    with pytest.raises(ValueError, match="is given but --dataset is 'synthetic'"):
        train.parse_arguments(arguments)
