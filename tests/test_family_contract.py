"""A second model family built from the contract of mmer/family.py alone, trained end to end through
train.py's code path: the shared layer must need nothing else of a family."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.utils import ModelOutput

from mmer.family import MODALITIES, ModelFamily
from modeling_lddu import LDDUFeatureExtractor

from .conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402


class MeanPoolConfig(PreTrainedConfig):
    model_type = "mean_pool_test_family"
    text_dim: int = 1
    audio_dim: int = 1
    visual_dim: int = 1
    max_position_embeddings: int = 60
    decision_threshold: float = 0.5
    label_thresholds: list[float] | None = None

    @property
    def thresholds(self) -> list[float]:
        return self.label_thresholds or [self.decision_threshold] * self.num_labels


@dataclass
class MeanPoolOutput(ModelOutput):
    loss: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    sample_uncertainty: torch.Tensor | None = None  # [batch]: one value per sample


class MeanPoolModel(PreTrainedModel):
    """Masked mean of each modality's frames, concatenated, one linear layer; sigmoid and BCE, or
    softmax and cross-entropy when ``config.problem_type`` is single-label."""

    config_class = MeanPoolConfig
    prediction_fields = ("scores", "sample_uncertainty")
    lora_target_modules = r"classifier"
    lora_modules_to_save = ("classifier",)

    def __init__(self, config):
        super().__init__(config)
        width = sum(getattr(config, f"{m}_dim") for m in MODALITIES)
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, 0.02)
            module.bias.data.zero_()

    def reset_label_set(self, id2label):
        self.config.id2label = dict(id2label)
        self.classifier = nn.Linear(self.classifier.in_features, len(id2label))
        self._init_weights(self.classifier)

    def forward(
        self,
        text_features=None,
        text_mask=None,
        audio_features=None,
        audio_mask=None,
        visual_features=None,
        visual_mask=None,
        labels=None,
    ):
        inputs = {
            "text": (text_features, text_mask),
            "audio": (audio_features, audio_mask),
            "visual": (visual_features, visual_mask),
        }
        batch = next(f.shape[0] for f, _ in inputs.values() if f is not None)
        pooled = []
        for modality in MODALITIES:
            features, mask = inputs[modality]
            if features is None:
                pooled.append(torch.zeros(batch, getattr(self.config, f"{modality}_dim")))
                continue
            mask = mask.float()[..., None]
            pooled.append((features * mask).sum(1) / mask.sum(1).clamp(min=1))
        logits = self.classifier(torch.cat(pooled, dim=-1))
        if self.config.problem_type == "single_label_classification":
            scores = logits.softmax(dim=-1)
            # One-hot rows from the shared layer; [batch] class indices are accepted too.
            targets = labels if labels is None or labels.ndim == 1 else labels.argmax(dim=-1)
            loss = None if labels is None else nn.functional.cross_entropy(logits, targets)
        else:
            scores = torch.sigmoid(logits)
            loss = None if labels is None else nn.functional.binary_cross_entropy(scores, labels)
        # A per-sample uncertainty: how far the top score is from certainty.
        uncertainty = 1.0 - scores.max(dim=-1).values
        return MeanPoolOutput(loss=loss, scores=scores, sample_uncertainty=uncertainty)


@pytest.fixture(scope="module", autouse=True)
def registered_family():
    AutoConfig.register(MeanPoolConfig.model_type, MeanPoolConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(MeanPoolConfig, MeanPoolModel, exist_ok=True)
    AutoFeatureExtractor.register(MeanPoolConfig, LDDUFeatureExtractor, exist_ok=True)


def test_the_family_is_found_through_the_registries():
    family = ModelFamily.from_model_type("mean_pool_test_family")
    assert family.model_class is MeanPoolModel
    assert family.feature_extractor_class is LDDUFeatureExtractor


def test_an_unregistered_family_is_refused_by_name():
    with pytest.raises(ValueError, match="no_such_family"):
        ModelFamily.from_model_type("no_such_family")


def test_a_model_without_the_contract_is_refused():
    class Incomplete(PreTrainedConfig):
        model_type = "incomplete_test_family"

    class IncompleteModel(PreTrainedModel):
        config_class = Incomplete

    AutoConfig.register(Incomplete.model_type, Incomplete, exist_ok=True)
    AutoModelForSequenceClassification.register(Incomplete, IncompleteModel, exist_ok=True)
    AutoFeatureExtractor.register(Incomplete, LDDUFeatureExtractor, exist_ok=True)
    with pytest.raises(TypeError, match="prediction_fields"):
        ModelFamily.from_model_type("incomplete_test_family")


@pytest.fixture
def card_text():
    """The family's card text, where the contract says it lives (removed afterwards)."""
    path = REPO_ROOT / "model_cards" / "mean_pool_test_family.yaml"
    path.write_text(
        "display_name: MeanPool\nfull_name: Mean pooling\ndescription: a test family\n"
        "architecture: The masked mean of each modality, one linear layer.\n"
        "uncertainty_definition: One minus the top score of a sample.\n"
        "citation_bibtex: none\npaper: {title: none, authors: none, year: 2026, arxiv_id: none, "
        "url: none}\n"
    )
    yield path
    path.unlink()


def test_a_second_family_trains_and_exports_through_train_py(tmp_path, card_text):
    output_dir = tmp_path / "run"
    arguments = [
        "--model_type", "mean_pool_test_family",
        "--output_dir", str(output_dir),
        "--synthetic_train_size", "64",
        "--synthetic_validation_size", "32",
        "--synthetic_test_size", "32",
        "--synthetic_length", "4",
        "--synthetic_dims", "6,4,3",
        "--num_train_epochs", "2",
        "--learning_rate", "0.05",
        "--per_device_train_batch_size", "16",
        "--disable_tqdm", "true",
        "--use_cpu", "true",
    ]  # fmt: skip
    trainer, results = train.run(*train.parse_arguments(arguments))
    assert isinstance(trainer.model, MeanPoolModel)
    assert set(results["modality_combinations"]) == {"t", "a", "v", "ta", "tv", "av", "tav"}
    assert 0.0 <= results["test"]["f1_micro"] <= 1.0
    saved = json.loads((output_dir / "config.json").read_text())
    assert saved["model_type"] == "mean_pool_test_family"
    assert len(saved["label_thresholds"] or [saved["decision_threshold"]]) >= 1
    assert json.loads((output_dir / "all_results.json").read_text())["test"] == results["test"]
    assert "MeanPool" in (output_dir / "README.md").read_text()
    reloaded = MeanPoolModel.from_pretrained(output_dir)
    assert torch.equal(reloaded.classifier.weight, trainer.model.classifier.weight)


def test_a_softmax_family_trains_on_single_label_data_through_train_py(tmp_path, card_text):
    output_dir = tmp_path / "single"
    arguments = [
        "--model_type", "mean_pool_test_family",
        "--synthetic_problem_type", "single_label_classification",
        "--output_dir", str(output_dir),
        "--synthetic_train_size", "64",
        "--synthetic_validation_size", "32",
        "--synthetic_test_size", "32",
        "--synthetic_length", "4",
        "--synthetic_dims", "6,4,3",
        "--num_train_epochs", "2",
        "--learning_rate", "0.05",
        "--per_device_train_batch_size", "16",
        "--disable_tqdm", "true",
        "--use_cpu", "true",
    ]  # fmt: skip
    trainer, results = train.run(*train.parse_arguments(arguments))
    assert trainer.model.config.problem_type == "single_label_classification"
    scores = trainer.model(
        **{f"{m}_features": torch.ones(2, 3, d) for m, d in zip(MODALITIES, (6, 4, 3))},
        **{f"{m}_mask": torch.ones(2, 3) for m in MODALITIES},
    ).scores
    assert torch.allclose(scores.sum(-1), torch.ones(2))  # softmax scores
    assert results["problem_type"] == "single_label_classification"
    assert 0.0 <= results["test"]["unweighted_accuracy"] <= 1.0
    # The per-sample uncertainty is scored against wrong samples (arg-max wrong).
    assert "sample_error_auroc" in results["uncertainty"]
    # Every modality combination is scored like the full test split, uncertainty included.
    assert set(results["modality_combinations_mean"]) == {
        "accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro", "sample_error_auroc",
    }  # fmt: skip
    assert all("sample_error_auroc" in row for row in results["modality_combinations"].values())
    card = (output_dir / "README.md").read_text()
    assert "### Confusion matrix" in card and "MeanPool" in card
    # The card's uncertainty section: the family's definition and the measured AUROC.
    assert "One minus the top score of a sample." in card
