"""The options every builder's command line shares (`builder_parser`, `parse_builder_args`), and the
whole command line of the source-file builders (`python -m dataset_scripts.mosei`, `.m3ed`)."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import saving
from .conversion import ConversionResult, convert_source
from .modalities import MODALITIES
from .sources import DatasetSpec, non_finite_total

__all__ = ["builder_parser", "builder_sources", "parse_builder_args", "run_conversion_cli"]


def _parse_feature_dims(text: str) -> dict[str, int]:
    dims = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        modality, _, value = item.partition("=")
        if modality not in MODALITIES or not value.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected MODALITY=DIM pairs with MODALITY in {MODALITIES}, e.g. "
                f"text=768,audio=74; got {item!r}"
            )
        dims[modality] = int(value)
    return dims


def builder_parser(
    prog: str, description: str, output_help: str, overwrite_help: str, **parser_kwargs: Any
) -> argparse.ArgumentParser:
    """A parser with the options every builder shares: `--output`, `--overwrite`, `--log_level`."""
    parser = argparse.ArgumentParser(prog=prog, description=description, **parser_kwargs)
    parser.add_argument("--output", required=True, type=Path, help=output_help)
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)
    parser.add_argument(
        "--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def parse_builder_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parses `argv` and sets up logging; before the (long) build starts, refuses an `--output`
    that is or contains a source (`--source`, `--source_dir`), that is not writable, or that exists
    and is not replaceable (without `--overwrite`, or not a dataset this package wrote)."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if getattr(args, "source_format", None):  # a single file, not a dataset folder
        if args.output.exists() and not args.overwrite:
            parser.error(f"--output {args.output} exists; pass --overwrite to replace it")
        return args
    try:
        saving.check_dataset_output(
            args.output, args.overwrite, builder_sources(args), flag="--overwrite"
        )
    except (OSError, ValueError) as error:
        parser.error(f"--output: {error}")
    return args


def builder_sources(args: argparse.Namespace) -> list[Path]:
    """The input paths a builder's command line names (never to be overwritten)."""
    return [getattr(args, name) for name in ("source", "source_dir") if getattr(args, name, None)]


def _build_argument_parser(
    specs: Mapping[str, DatasetSpec], what: str, source_help: str
) -> argparse.ArgumentParser:
    parser = builder_parser(
        f"python -m {__package__}.{next(iter(specs.values())).name}",
        f"Convert {what} into a Hugging Face dataset (train/validation/test).",
        output_help="Folder for the saved dataset (save_to_disk).",
        overwrite_help="Replace an existing --output (and Hub config folder).",
        epilog=source_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source", required=True, type=Path, help="The downloaded .pkl or .pt file."
    )
    if len(specs) > 1:
        parser.add_argument(
            "--config",
            choices=list(specs),
            default=next(iter(specs)),
            help="Dataset configuration.",
        )
    parser.add_argument(
        "--hub_layout",
        type=Path,
        default=None,
        help="Also write the Hub layout here: <config>/<split>-*.parquet and a README.md dataset "
        "card. Other configurations already in that folder are kept.",
    )
    parser.add_argument(
        "--push_to_hub",
        metavar="REPO",
        default=None,
        help="Upload the Hub layout to this dataset repository (needs a token with write access).",
    )
    parser.add_argument(
        "--private", action="store_true", help="Create the Hub repository as private."
    )
    parser.add_argument(
        "--feature_dims",
        type=_parse_feature_dims,
        default=None,
        metavar="M=D,...",
        help="Expected feature dims, overriding the configuration's (e.g. text=300 for GloVe).",
    )
    parser.add_argument(
        "--keep_padding",
        action="store_true",
        help="Do not cut padded sequences to the real lengths the source stores (len_list, "
        "audio_lengths, vision_lengths).",
    )
    return parser


def _summary(result: ConversionResult, spec: DatasetSpec, written: Mapping[str, str]) -> str:
    report = result.report
    lines = [f"{spec.name} ({spec.config_name}) from {report['source_path']}"]
    lines.append(f"labels: {', '.join(spec.label_spec.label_names)}")
    lines.append(
        "feature dims: " + ", ".join(f"{m} {d}" for m, d in report["feature_dims"].items())
    )
    if report["swapped_audio_visual"]:
        lines.append(
            "audio and visual features were stored swapped in the source and have been exchanged"
        )
    header = f"{'split':<12}{'samples':>9}" + "".join(f"{m + ' length':>16}" for m in MODALITIES)
    header += f"{'non-finite -> 0':>18}"
    lines += [header, "-" * len(header)]
    for split, dataset in result.dataset_dict.items():
        row = f"{split:<12}{dataset.num_rows:>9}"
        for modality in MODALITIES:
            length = dataset.features[modality].shape[0]
            row += f"{'variable' if length is None else length:>16}"
        replaced = sum(map(non_finite_total, report["non_finite"][split].values()))
        lines.append(row + f"{replaced:>18}")
    lines += [f"{name}: {path}" for name, path in written.items()]
    return "\n".join(lines)


def run_conversion_cli(
    argv: Sequence[str] | None,
    specs: Mapping[str, DatasetSpec],
    what: str,
    source_help: str,
) -> int:
    """The command line shared by `python -m dataset_scripts.mosei` and `... .m3ed`.

    `specs` maps each configuration name to its spec (the first is the default), `what` names the
    source files in the description, `source_help` describes their format.
    """
    parser = _build_argument_parser(specs, what, source_help)
    args = parse_builder_args(parser, argv)
    spec = specs[getattr(args, "config", next(iter(specs)))]
    hub_config_dir = args.hub_layout / spec.config_name if args.hub_layout else None
    sources = builder_sources(args)
    if hub_config_dir is not None:
        try:
            saving.check_dataset_output(hub_config_dir, args.overwrite, sources, flag="--overwrite")
        except (OSError, ValueError) as error:
            parser.error(f"--hub_layout: {error}")

    result = convert_source(
        args.source, spec, feature_dims=args.feature_dims, use_lengths=not args.keep_padding
    )
    saved = saving.save_prepared(
        result.dataset_dict, args.output, overwrite=args.overwrite, sources=sources
    )
    written = {"saved dataset": str(saved)}
    card_text = {"pretty_name": spec.pretty_name, "card_description": spec.description}
    # Pushing needs a Hub layout: without --hub_layout it is written to a temporary folder.
    with tempfile.TemporaryDirectory() as scratch:
        hub_dir = args.hub_layout or (Path(scratch) if args.push_to_hub else None)
        if hub_dir is not None:
            saving.write_hub_layout(
                result.dataset_dict,
                hub_dir,
                spec.config_name,
                overwrite=args.overwrite,
                **card_text,
            )
        if args.hub_layout is not None:
            written["hub layout"] = str(args.hub_layout)
        if args.push_to_hub:
            written["pushed"] = saving.push_hub_layout(
                hub_dir, args.push_to_hub, spec.config_name, private=args.private
            )
    print(_summary(result, spec, written), file=sys.stdout)
    return 0
