"""A trainable text backbone: a tiny generated BERT (with the packaged MiniLM's tokenizer) inside
each family, fed the processor's tokens. Frozen it gives the processor's frames; train.py fine-tunes
it (all of it, its top layers, or LoRA adapters merged at export) with its own learning rate; the
model folder answers raw text in a fresh Python without the package."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertModel,
)

from dataset_scripts import raw_media

from .conftest import REPO_ROOT, run_without_the_package
from .test_train import TINY_MODEL

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402

SENTENCES = {
    "joy": ["I love this!", "What a wonderful day.", "This makes me so happy.", "Great news!"],
    "anger": ["I hate this.", "This is outrageous!", "Stop doing that.", "How dare you."],
}
SPLITS = ["train", "train", "validation", "test"]
BACKBONE_LR = 1e-3


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, minilm_folder):
    """A 2-layer, 16-d BERT with generated weights and the packaged MiniLM's tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text_data(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("text-data")
    lines = ["id,text,labels,split"]
    for label, texts in SENTENCES.items():
        for position, text in enumerate(texts):
            lines.append(f'{label}{position},"{text}",{label},{SPLITS[position]}')
    lines += ['joy9,"Lovely, thank you.",joy,train', 'anger9,"You ruined everything.",anger,train']
    (root / "index.csv").write_text("\n".join(lines) + "\n")
    # No token limit given: the processor's is the tiny encoder's 64 positions.
    settings = raw_media.make_settings(["text"], str(tiny_encoder))
    result, settings = raw_media.build(root / "index.csv", settings=settings)
    return raw_media.save(result, settings, root / "data")


def _train(data_dir, output_dir, *extra):
    argv = [
        "--output_dir", str(output_dir),
        "--dataset", "raw-media",
        "--data_dir", str(data_dir),
        "--model_type", "lddu",
        "--config_overrides", json.dumps(TINY_MODEL),
        "--text_backbone",
        "--max_steps", "3",
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8",
        "--learning_rate", "1e-2",
        "--disable_tqdm", "true",
        "--use_cpu", "true",
        *extra,
    ]  # fmt: skip
    return train.run(*train.parse_arguments(argv))


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, text_data):
    output_dir = tmp_path_factory.mktemp("fine-tuned") / "model"
    trainer, results = _train(
        text_data,
        output_dir,
        "--train_text_backbone",
        "--text_backbone_learning_rate", str(BACKBONE_LR),
        "--activation_checkpointing", "true",
    )  # fmt: skip
    return output_dir, trainer, results


def _backbone_weights(folder):
    prefix = "lddu.text_backbone.encoder."
    weights = load_file(str(folder / "model.safetensors"))
    return {
        name[len(prefix) :]: tensor for name, tensor in weights.items() if name.startswith(prefix)
    }


def test_a_frozen_backbone_computes_the_processors_frames(tiny_encoder):
    from modeling_lddu import (
        LDDUConfig,
        LDDUFeatureExtractor,
        LDDUForEmotionRecognition,
        LDDUProcessor,
    )

    encoder = BertModel.from_pretrained(tiny_encoder)
    extractor = LDDUFeatureExtractor(feature_dims={"text": 16}, max_lengths={"text": 32})
    framing = LDDUProcessor(extractor, text_encoder_name_or_path=str(tiny_encoder))
    tokenizing = LDDUProcessor(
        extractor, text_encoder_name_or_path=str(tiny_encoder), text_encoder_in_model=True
    )
    config = LDDUConfig(**TINY_MODEL, text_dim=16, text_backbone_config=encoder.config.to_dict())
    model = LDDUForEmotionRecognition(config)
    model.lddu.text_backbone.load_pretrained(encoder)
    model.train()  # a frozen backbone stays in eval mode: no dropout
    texts = ["I love this!", "Stop doing that, you absolute menace."]
    tokens = tokenizing(text=texts)
    assert set(tokens) == {"text_input_ids", "text_attention_mask", "text_mask"}
    frames, mask = model.lddu.text_backbone(
        tokens["text_input_ids"], tokens["text_attention_mask"], tokens["text_mask"]
    )
    expected = framing.encode_text(texts)
    for row, reference in enumerate(expected):
        count = int(mask[row].sum())
        assert count == reference.shape[0]
        np.testing.assert_allclose(frames[row, :count].detach().numpy(), reference, atol=1e-5)
    assert not model.lddu.text_backbone.encoder.training
    assert not any(p.requires_grad for p in model.lddu.text_backbone.parameters())


def test_trainable_layers_and_wrong_inputs(tiny_encoder):
    from modeling_lddu import LDDUConfig, LDDUForEmotionRecognition

    encoder_config = BertModel.from_pretrained(tiny_encoder).config.to_dict()
    config = LDDUConfig(
        **TINY_MODEL,
        text_dim=16,
        text_backbone_config=encoder_config,
        freeze_text_backbone=False,
        text_backbone_trainable_layers=1,
    )
    backbone = LDDUForEmotionRecognition(config).lddu.text_backbone
    trainable = {name for name, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("encoder.encoder.layer.1.") for name in trainable)
    with pytest.raises(ValueError, match="hidden_size"):
        LDDUConfig(**TINY_MODEL, text_dim=32, text_backbone_config=encoder_config)
    plain = LDDUForEmotionRecognition(LDDUConfig(**TINY_MODEL, text_dim=16))
    with pytest.raises(ValueError, match="no text backbone"):
        plain(text_input_ids=torch.ones(1, 3, dtype=torch.long))


def test_train_py_refuses_backbone_flags_without_a_backbone(tmp_path):
    with pytest.raises(ValueError, match="need --text_backbone"):
        train.parse_arguments(["--output_dir", str(tmp_path / "o"), "--train_text_backbone"])
    backbone = ["--output_dir", str(tmp_path / "o"), "--text_backbone"]
    with pytest.raises(ValueError, match="--text_backbone_layers chooses"):
        train.parse_arguments([*backbone, "--text_backbone_layers", "1"])
    with pytest.raises(ValueError, match="the backbone is frozen"):
        train.parse_arguments([*backbone, "--text_backbone_learning_rate", "1e-4"])
    with pytest.raises(ValueError, match="LoRA adapters on the frozen backbone"):
        train.parse_arguments([*backbone, "--use_lora", "--train_text_backbone"])
    with pytest.raises(ValueError, match="--use_lora adapts"):
        train.parse_arguments(["--output_dir", str(tmp_path / "o"), "--use_lora"])
    with pytest.raises(ValueError, match="needs data built with a text encoder"):
        train.run(
            *train.parse_arguments(
                ["--output_dir", str(tmp_path / "o"), "--text_backbone", "--max_steps", "1"]
            )
        )


def test_fine_tuning_trains_the_backbone_at_its_own_rate(fine_tuned, tiny_encoder):
    folder, trainer, _ = fine_tuned
    rates = sorted({group["initial_lr"] for group in trainer.optimizer.param_groups})
    assert rates == [BACKBONE_LR, 1e-2]
    backbone = {id(p) for p in trainer.model.lddu.text_backbone.parameters()}
    for group in trainer.optimizer.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert in_backbone == {group["initial_lr"] == BACKBONE_LR}
    assert trainer.model.lddu.text_backbone.encoder.encoder.layer[0].gradient_checkpointing
    start = BertModel.from_pretrained(tiny_encoder).state_dict()
    trained = _backbone_weights(folder)
    assert set(trained) == {name for name in start if not name.startswith("pooler.")}
    changed = [name for name in trained if not torch.equal(trained[name], start[name])]
    assert len(changed) > len(trained) // 2
    config = json.loads((folder / "config.json").read_text())
    assert config["text_backbone_config"]["hidden_size"] == 16
    assert config["freeze_text_backbone"] is False
    processor = json.loads((folder / "processor_config.json").read_text())
    assert processor["text_encoder_in_model"] is True
    # Every text the processor accepts fits the model's position table, not only the training
    # texts (all far shorter than 60 tokens).
    assert processor["text_max_tokens"] == 64 and config["max_position_embeddings"] == 64


def test_a_fresh_python_answers_raw_text_with_the_fine_tuned_backbone(fine_tuned, tmp_path):
    folder, trainer, _ = fine_tuned
    script = f"""
        import json
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification, pipeline
        folder = {str(folder)!r}
        base = AutoModel.from_pretrained(folder, trust_remote_code=True)
        print("BASE", type(base).__name__, type(base.text_backbone).__name__)
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
        recognizer = pipeline(
            "multimodal-emotion-recognition", model=folder, trust_remote_code=True
        )
        answer = recognizer("I love this!", return_preprocessing=True)
        print("ANSWER", json.dumps([[e["label"], e["score"]] for e in answer]))
        print("NOTE", json.dumps(answer[0]["preprocessing"]))
        long = recognizer(" ".join(["so very happy"] * 40))  # 120 words: cut to 64 tokens
        print("LONG", json.dumps(long[0]["preprocessing"]))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["BASE"] == "LDDUModel LDDUTextBackbone"
    # The same answer as the trained model on the processor's tokens, in this process.
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        scores = model(**processor(text="I love this!")).scores[0]
    labels = model.config.id2label
    expected = sorted(((labels[i], float(s)) for i, s in enumerate(scores)), key=lambda e: -e[1])
    answer = json.loads(lines["ANSWER"])
    assert [label for label, _ in answer] == [label for label, _ in expected]
    np.testing.assert_allclose([s for _, s in answer], [s for _, s in expected], atol=1e-6)
    (note,) = json.loads(lines["NOTE"])  # one record per modality given
    assert note["modality"] == "text" and note["input_tokens"] == note["encoded_tokens"] == 6
    (long,) = json.loads(lines["LONG"])
    assert long["input_tokens"] == 122 and long["encoded_tokens"] == 64


@pytest.mark.parametrize("model_type", ["lsgmer", "mcur"])
def test_every_family_takes_the_backbone(model_type, tiny_encoder):
    encoder = BertModel.from_pretrained(tiny_encoder)
    import modeling_lsgmer  # noqa: F401
    import modeling_mcur  # noqa: F401
    from mmer.family import ModelFamily

    family = ModelFamily.from_model_type(model_type)
    config = family.config_class(
        text_dim=16,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=16,
        text_backbone_config=encoder.config.to_dict(),
        freeze_text_backbone=False,
    )
    model = AutoModelForSequenceClassification.from_config(config)
    model.base_model.text_backbone.load_pretrained(encoder)
    ids = torch.tensor([[101, 1045, 2293, 2023, 102]])
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    labels = torch.eye(config.num_labels)[:1]
    output = model(text_input_ids=ids, text_mask=mask, labels=labels)
    output.loss.backward()
    grads = [p.grad for p in model.base_model.text_backbone.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_lora_on_the_backbone_is_merged_into_the_export(text_data, tiny_encoder, tmp_path):
    folder = tmp_path / "lora"
    trainer, _ = _train(text_data, folder, "--use_lora", "--lora_r", "4")
    weights = load_file(str(folder / "model.safetensors"))
    assert not any("lora" in name for name in weights)
    assert not (folder / "adapter").exists()
    start = BertModel.from_pretrained(tiny_encoder).state_dict()
    trained = _backbone_weights(folder)
    changed = {name for name in trained if not torch.equal(trained[name], start[name])}
    # Adapters on the attention's query and value (peft's default for BERT), nothing else.
    assert changed and all(
        ".attention.self.query." in n or ".attention.self.value." in n for n in changed
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["freeze_text_backbone"] is True
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(model.lddu.text_backbone.encoder).__name__ == "BertModel"


def test_the_card_handler_and_examples_of_a_backbone_model(fine_tuned):
    from mmer.export import EXAMPLE_SENTENCES

    from .test_train import _load_handler

    folder, _, results = fine_tuned
    assert [example["text"] for example in results["widget_examples"]] == list(EXAMPLE_SENTENCES)
    card = (folder / "README.md").read_text()
    assert "Input is raw text" in card
    assert (
        "a text encoder inside this model (bert, 2 of its 2 layers, hidden size 16, fine-tuned"
        in card
    )
    assert "_name_or_path" not in card and str(folder.parent.parent) not in card
    config = json.loads((folder / "config.json").read_text())
    assert "_name_or_path" not in config["text_backbone_config"]
    handler = _load_handler(folder)
    single = handler({"inputs": {"text": "I love this!"}})
    batch = handler({"inputs": [{"text": "I love this!"}, {"text": "Stop doing that, now."}]})
    assert [entry["label"] for entry in single] == [entry["label"] for entry in batch[0]]
    np.testing.assert_allclose(
        [entry["score"] for entry in single], [entry["score"] for entry in batch[0]], atol=1e-5
    )


def test_a_training_step_under_bf16_autocast(tiny_encoder):
    from modeling_lddu import LDDUConfig, LDDUForEmotionRecognition

    encoder = BertModel.from_pretrained(tiny_encoder)
    config = LDDUConfig(
        **TINY_MODEL,
        text_dim=16,
        text_backbone_config=encoder.config.to_dict(),
        freeze_text_backbone=False,
    )
    model = LDDUForEmotionRecognition(config)
    model.lddu.text_backbone.load_pretrained(encoder)
    ids = torch.tensor([[101, 1045, 2293, 2023, 102], [101, 2644, 102, 0, 0]])
    attention = (ids > 0).long()
    frames = attention * (ids != 101) * (ids != 102)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(
            text_input_ids=ids,
            text_attention_mask=attention,
            text_mask=frames,
            labels=torch.eye(config.num_labels)[:2],
        )
    output.loss.backward()
    assert torch.isfinite(output.loss)
    grad = model.lddu.text_backbone.encoder.embeddings.word_embeddings.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_reloading_keeps_what_is_frozen(tiny_encoder, tmp_path):
    from modeling_lddu import LDDUConfig, LDDUForEmotionRecognition, LDDUModel

    encoder_config = BertModel.from_pretrained(tiny_encoder).config.to_dict()
    for freeze, layers in ((True, None), (False, 1)):
        config = LDDUConfig(
            **TINY_MODEL,
            text_dim=16,
            text_backbone_config=encoder_config,
            freeze_text_backbone=freeze,
            text_backbone_trainable_layers=layers,
        )
        model = LDDUForEmotionRecognition(config)
        flags = {n: p.requires_grad for n, p in model.lddu.text_backbone.named_parameters()}
        model.save_pretrained(tmp_path / str(freeze))
        for loaded in (
            LDDUForEmotionRecognition.from_pretrained(tmp_path / str(freeze)).lddu,
            LDDUModel.from_pretrained(tmp_path / str(freeze)),
        ):
            backbone = loaded.text_backbone
            assert {n: p.requires_grad for n, p in backbone.named_parameters()} == flags
            loaded.train()
            assert backbone.encoder.training is not freeze


def test_a_lower_layer_and_left_padding_give_the_processors_frames(tiny_encoder):
    from modeling_lddu import (
        LDDUConfig,
        LDDUFeatureExtractor,
        LDDUForEmotionRecognition,
        LDDUProcessor,
    )

    encoder = BertModel.from_pretrained(tiny_encoder)
    extractor = LDDUFeatureExtractor(feature_dims={"text": 16}, max_lengths={"text": 32})
    settings = {"text_encoder_name_or_path": str(tiny_encoder), "text_encoder_layer": 1}
    framing = LDDUProcessor(extractor, **settings)
    tokenizing = LDDUProcessor(extractor, **settings, text_encoder_in_model=True)
    config = LDDUConfig(
        **TINY_MODEL,
        text_dim=16,
        text_backbone_config=encoder.config.to_dict(),
        text_backbone_layer=1,
        freeze_text_backbone=False,
    )
    model = LDDUForEmotionRecognition(config).eval()
    model.lddu.text_backbone.load_pretrained(encoder)
    # Hidden state 1 is the first layer's output: the second layer is not kept.
    assert len(model.lddu.text_backbone.transformer_layers()) == 1
    texts = ["I love this!", "Stop doing that, you absolute menace."]
    tokens = tokenizing(text=texts)
    expected = framing.encode_text(texts)
    # The batch padded on the left instead: the backbone moves the tokens back to the front.
    lengths = tokens["text_attention_mask"].sum(dim=1)
    left = {name: torch.zeros_like(value) for name, value in tokens.items()}
    for row, length in enumerate(lengths.tolist()):
        for name in left:
            left[name][row, -length:] = tokens[name][row, :length]
    for batch in (tokens, left):
        frames, mask = model.lddu.text_backbone(
            batch["text_input_ids"], batch["text_attention_mask"], batch["text_mask"]
        )
        for row, reference in enumerate(expected):
            count = int(mask[row].sum())
            assert count == reference.shape[0]
            np.testing.assert_allclose(frames[row, :count].detach().numpy(), reference, atol=1e-5)


def test_a_backbone_folder_can_be_published_and_not_continued(fine_tuned, tmp_path):
    from unittest import mock

    from huggingface_hub import HfApi

    from mmer.hub import publish_folder

    folder, _, _ = fine_tuned
    api = mock.create_autospec(HfApi, instance=True)
    publish_folder(folder, "me/lddu-backbone", api=api)
    api.upload_folder.assert_called_once()
    with pytest.raises(ValueError, match="holds a text backbone"):
        train.run(
            *train.parse_arguments(
                ["--output_dir", str(tmp_path / "o"), "--model_name_or_path", str(folder)]
            )
        )
