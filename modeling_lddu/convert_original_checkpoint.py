"""Convert a state dict of the authors' LDDU code (github.com/201983290498/lddu_mmer) to a model folder.

    python -m modeling_lddu.convert_original_checkpoint SRC DEST_DIR [--num_attention_heads 8] ...

``SRC`` is a ``.bin``/``.pt`` file (read with ``torch.load(weights_only=True)``) or a
``.safetensors`` file holding the authors' ``MyModel.state_dict()``. Every dimension that tensor
shapes reveal (feature dims, hidden and latent sizes, layer counts, queue size, label count) is read
from the state dict; the rest comes from flags whose defaults are the paper configuration.

The names map as in docs/design.md, "Names" (its converter paragraph has every rule); modality
order (visual, audio, text) = the authors' ModuleList index 0/1/2. Modules the authors' forward never
uses are dropped by name (`DEAD_PREFIXES`); any other unknown key is an error.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import torch

from .configuration_lddu import LATENT_MODALITY_ORDER, MOSEI_EMOTIONS, LDDUConfig

logger = logging.getLogger(__name__)

#: The authors' encoder attribute per modality.
ORIGINAL_ENCODER = {"text": "bert", "audio": "audio", "visual": "visual"}
#: Index of each modality in the authors' ModuleLists.
ORIGINAL_INDEX = {modality: index for index, modality in enumerate(LATENT_MODALITY_ORDER)}
#: Modules that exist in the authors' model but never take part in its forward pass.
DEAD_PREFIXES = (
    "bert.pooler.",
    "audio.pooler.",
    "visual.pooler.",
    "final_classifer2.",
    "var_classifier2.",
)

#: Config fields that tensor shapes cannot tell (command-line flags), with the paper's values.
PAPER_DEFAULTS = {
    "num_attention_heads": 8,
    "hidden_dropout_prob": 0.3,
    "attention_probs_dropout_prob": 0.3,
    "contrastive_temperature": 0.07,
    "decision_threshold": 0.21,
    "semantic_loss_weight": 0.3,
    "fused_loss_weight": 1.0,
    "contrastive_loss_weight": 1.0,
    "calibration_loss_weight": 0.3,
}

_ENCODER_LAYER_MAP = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention_output",
    "attention.output.LayerNorm": "attention_layer_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_layer_norm",
}


class CheckpointConversionError(ValueError):
    """The source state dict does not look like the authors' LDDU."""


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the authors' state dict safely (safetensors, or torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state_dict = load_file(str(path))
    else:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
            state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor)
        for key, value in state_dict.items()
    ):
        raise CheckpointConversionError(f"{path} does not hold a state dict of named tensors.")
    # Checkpoints saved from DataParallel/DDP wrappers carry a "module." prefix.
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    return state_dict


def _require(state_dict: dict, key: str) -> torch.Tensor:
    if key not in state_dict:
        raise CheckpointConversionError(
            f"The checkpoint lacks {key!r}, which every LDDU checkpoint of the authors has."
        )
    return state_dict[key]


def _count_layers(state_dict: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.encoder\.layer\.(\d+)\.")
    indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    if not indices:
        raise CheckpointConversionError(f"The checkpoint has no encoder layers under {prefix!r}.")
    if indices != set(range(len(indices))):
        raise CheckpointConversionError(
            f"Encoder layers of {prefix!r} are not numbered 0..n-1: {indices}."
        )
    return len(indices)


def _renamed_keys(config: LDDUConfig) -> list[tuple[str, str]]:
    """(authors' key, our key) of every tensor that is only renamed, in modality order."""
    modules = []  # (authors' module, our module), each with a weight and a bias
    positions = []
    for modality in LATENT_MODALITY_ORDER:
        source, index = ORIGINAL_ENCODER[modality], ORIGINAL_INDEX[modality]
        encoder = f"lddu.encoders.{modality}"
        latent = f"lddu.latent_encoders.{modality}"
        last = len(config.latent_hidden_sizes) - 1
        modules += [
            (f"{modality}_norm.{modality}_norm2d", f"{encoder}.embeddings.input_norm"),
            (f"{source}.embeddings.word_embeddings", f"{encoder}.embeddings.feature_projection"),
            (f"{source}.embeddings.LayerNorm", f"{encoder}.embeddings.layer_norm"),
        ]
        modules += [
            (f"{source}.encoder.layer.{layer}.{original}", f"{encoder}.layers.{layer}.{ours}")
            for layer in range(config.num_layers(modality))
            for original, ours in _ENCODER_LAYER_MAP.items()
        ]
        modules += [
            (
                f"label_wise_attention.{original}_projection.{index}",
                f"lddu.label_attention.{modality}.{ours}_projection",
            )
            for original, ours in (("label", "label"), ("seq", "sequence"), ("out", "output"))
        ]
        modules += [(f"encoder.{index}.linear.{i}", f"{latent}.layers.{i}") for i in range(last)]
        modules += [
            (f"encoder.{index}.output", f"{latent}.layers.{last}"),
            (f"encoder.{index}.fc_mu", f"{latent}.mean_projection"),
            (f"encoder.{index}.fc_var", f"{latent}.log_variance_projection"),
        ]
        positions.append(
            (
                f"{source}.embeddings.position_embeddings.weight",
                f"{encoder}.embeddings.position_embeddings.weight",
            )
        )
    modules += [
        ("common_classfier.0", "fusion.semantic_classifier.hidden"),
        ("common_classfier.3", "fusion.semantic_classifier.output"),
    ]
    renamed = [(f"{a}.{name}", f"{b}.{name}") for a, b in modules for name in ("weight", "bias")]
    return renamed + positions + [("embedding_layer.weight", "lddu.label_embeddings.weight")]


def config_from_original_state_dict(state_dict: dict[str, torch.Tensor], **overrides) -> LDDUConfig:
    """Build an :class:`LDDUConfig` from tensor shapes; ``overrides`` supply what shapes can't tell."""

    def size(key: str, axis: int = 0) -> int:
        """Dimension ``axis`` of the checkpoint's tensor ``key`` (which must exist)."""
        return _require(state_dict, key).shape[axis]

    dims = {}
    for modality, prefix in ORIGINAL_ENCODER.items():
        dims[f"{modality}_dim"] = size(f"{prefix}.embeddings.word_embeddings.weight", axis=1)
        dims[f"{modality}_num_layers"] = _count_layers(state_dict, prefix)
    latent_layers = []
    index = 0
    while f"encoder.0.linear.{index}.weight" in state_dict:
        latent_layers.append(size(f"encoder.0.linear.{index}.weight"))
        index += 1
    latent_layers.append(size("encoder.0.output.weight"))
    num_labels = size("embedding_layer.weight")
    derived = dict(
        **dims,
        hidden_size=size("bert.embeddings.word_embeddings.weight"),
        intermediate_size=size("bert.encoder.layer.0.intermediate.dense.weight"),
        max_position_embeddings=size("bert.embeddings.position_embeddings.weight"),
        label_attention_dim=size("label_wise_attention.label_projection.0.weight"),
        latent_hidden_sizes=latent_layers,
        latent_size=size("encoder.0.fc_mu.weight"),
        classifier_hidden_size=size("common_classfier.0.weight"),
        queue_size=size("queue"),
    )
    if "id2label" not in overrides and "num_labels" not in overrides:
        if num_labels == len(MOSEI_EMOTIONS):
            overrides["id2label"] = dict(enumerate(MOSEI_EMOTIONS))
        else:
            overrides["num_labels"] = num_labels
    for key, value in overrides.items():
        if key in derived and derived[key] != value:
            raise CheckpointConversionError(
                f"{key}={value!r} was given, but the checkpoint's tensors say {derived[key]!r}."
            )
    return LDDUConfig(**{**derived, **overrides})


def convert_original_state_dict(
    state_dict: dict[str, torch.Tensor], config: LDDUConfig
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """
    Map the authors' names to ours. Returns the new state dict and the dropped (dead) keys.
    Raises :class:`CheckpointConversionError` on any key that is neither mapped nor known dead.
    """
    converted: dict[str, torch.Tensor] = {}
    consumed: set[str] = set()
    dropped = sorted(key for key in state_dict if key.startswith(DEAD_PREFIXES))
    consumed.update(dropped)

    def take(source: str, target: str, transform=None) -> None:
        tensor = _require(state_dict, source)
        converted[target] = transform(tensor) if transform is not None else tensor
        consumed.add(source)

    for source, target in _renamed_keys(config):
        take(source, target)

    for original, ours in (
        ("final_classifier", "mean_classifier"),
        ("var_classifier1", "spread_classifier"),
    ):
        hidden_weight, hidden_bias, output_weight, output_bias = [], [], [], []
        for label in range(config.num_labels):
            prefix = f"{original}.{label}"
            hidden_weight.append(_require(state_dict, f"{prefix}.0.weight").T)  # [in, hidden]
            hidden_bias.append(_require(state_dict, f"{prefix}.0.bias"))
            output_weight.append(_require(state_dict, f"{prefix}.3.weight").reshape(-1))
            output_bias.append(_require(state_dict, f"{prefix}.3.bias").reshape(()))
            consumed.update(f"{prefix}.{i}.{n}" for i in ("0", "3") for n in ("weight", "bias"))
        converted[f"fusion.{ours}.hidden_weight"] = torch.stack(hidden_weight)
        converted[f"fusion.{ours}.hidden_bias"] = torch.stack(hidden_bias)
        converted[f"fusion.{ours}.output_weight"] = torch.stack(output_weight)
        converted[f"fusion.{ours}.output_bias"] = torch.stack(output_bias)

    take("queue", "contrastive_memory.queue")
    take("queue_label", "contrastive_memory.queue_classes", lambda tensor: tensor.reshape(-1))
    take("queue_ptr", "contrastive_memory.queue_ptr", lambda tensor: tensor.reshape(1).long())

    for key, tensor in converted.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointConversionError(
                f"{key}: the checkpoint's tensor holds {int((~torch.isfinite(tensor)).sum())} "
                "non-finite value(s) (NaN or inf); a model built from it would answer NaN."
            )
    unknown = sorted(set(state_dict) - consumed)
    if unknown:
        raise CheckpointConversionError(
            f"{len(unknown)} key(s) of the checkpoint are not part of LDDU as the authors wrote it: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}"
        )
    return {key: value.contiguous() for key, value in converted.items()}, dropped


def convert_original_checkpoint(
    source: str | Path, destination: str | Path | None = None, **config_overrides
):
    """
    Load the authors' checkpoint and return an :class:`LDDUForEmotionRecognition` holding it; save
    it to ``destination`` (a new or empty folder) when given.
    """
    from .modeling_lddu import LDDUForEmotionRecognition

    state_dict = load_original_state_dict(source)
    config = config_from_original_state_dict(state_dict, **config_overrides)
    converted, dropped = convert_original_state_dict(state_dict, config)
    if dropped:
        logger.info(
            "Dropped %d tensors of modules the authors' forward never uses: %s",
            len(dropped),
            dropped,
        )
    model = LDDUForEmotionRecognition(config)
    expected = set(model.state_dict())
    missing = sorted(expected - set(converted))
    extra = sorted(set(converted) - expected)
    if missing or extra:
        raise CheckpointConversionError(
            f"Conversion mismatch: missing {missing}, unexpected {extra}."
        )
    for key, tensor in converted.items():
        target_shape = tuple(model.state_dict()[key].shape)
        if tuple(tensor.shape) != target_shape:
            raise CheckpointConversionError(
                f"{key}: the checkpoint gives shape {tuple(tensor.shape)}, the config expects {target_shape}."
            )
    model.load_state_dict(converted, strict=True)
    model.check_loaded_state()  # finite weights (checked above too), queue pointer in range
    if destination is not None:
        destination = Path(destination)
        if destination.exists() and any(destination.iterdir()):
            raise FileExistsError(
                f"{destination} exists and is not empty; refusing to overwrite it."
            )
        model.save_pretrained(destination)
        logger.info("Saved the converted model to %s", destination)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert the authors' LDDU state dict (.bin/.pt/.safetensors) to a transformers "
        "model folder loadable with trust_remote_code=True.",
    )
    parser.add_argument("source", help="the authors' state dict file")
    parser.add_argument("destination", help="output folder (must be new or empty)")
    for name, default in PAPER_DEFAULTS.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument(
        "--labels",
        default=None,
        help="comma-separated emotion names in class order (default: CMU-MOSEI's six when the "
        "checkpoint has six labels, else label_0..label_n)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {name: getattr(args, name) for name in PAPER_DEFAULTS}
    if args.labels:
        overrides["id2label"] = dict(enumerate(label.strip() for label in args.labels.split(",")))
    try:
        convert_original_checkpoint(args.source, args.destination, **overrides)
    except (CheckpointConversionError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
