"""M3ED (Chinese multi-party dialogues, seven emotions) from CARAT's `.pt` feature file.

Usage::

    python -m dataset_scripts.m3ed --source m3ed_data_60.pt --output data/m3ed
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from .cli import run_conversion_cli
from .conversion import ConversionResult, convert_source
from .labels import M3ED_LABELS
from .sources import DatasetSpec

__all__ = ["M3ED_SPEC", "SOURCE_FORMAT_HELP", "convert_m3ed", "main"]

M3ED_SPEC = DatasetSpec(
    name="m3ed",
    config_name="default",
    label_spec=M3ED_LABELS,
    # Text: RoBERTa-wwm 768. Audio: wav2vec 1024. Visual: DenseFace 342.
    expected_dims={"text": 768, "audio": 1024, "visual": 342},
    # CARAT pads each dialogue's utterance sequence to 60 steps and stores the real length here.
    length_keys={"text": "len_list", "audio": "len_list", "visual": "len_list"},
    pretty_name="M3ED emotions (pre-extracted features)",
    description=(
        "M3ED dialogues as utterance-level feature sequences (text RoBERTa 768, audio wav2vec "
        "1024, visual DenseFace 342); the labels are the set of emotions that occur in the "
        "dialogue."
    ),
)

SOURCE_FORMAT_HELP = (
    """\
expected source format
  CARAT's torch file (m3ed_data_60.pt, written by CARAT's utils/m3ed_reader.py):
      {'train': SPLIT, 'valid': SPLIT, 'test': SPLIT, 'dict': {'tgt': {...}, ...}, 'settings': ...}
  where each SPLIT is a dict with
      'src-text', 'src-audio', 'src-visual' : N arrays [60, D] (one row per utterance, zero-padded)
      'len_list' : N real lengths (utterances per dialogue)
      'tgt'      : N token lists [2, emotion tokens..., 3]; tokens """
    + M3ED_LABELS.token_summary()
    + """
                   (dataset_scripts/labels.py)
  MMSA-style keys ('text', 'audio', 'vision') are accepted too.

  Which modality is which is decided from the dims, not the key names: the expected dims are
  text 768, audio 1024 (wav2vec), visual 342 (DenseFace). CARAT's file stores the 1024-dim features
  under 'src-visual' and the 342-dim ones under 'src-audio'; such a swap is undone with a warning.
  Any other mismatch is an error; pass --feature_dims for features from other extractors.
  Sequences are cut to 'len_list' (turn off with --keep_padding). The file's own dict['tgt']
  vocabulary is checked against labels.py.

  The file is read with torch.load(weights_only=True); only numpy arrays, Python containers and
  argparse.Namespace (CARAT's 'settings') are allowed in it. Non-finite values are replaced by 0 and
  counted in cleaning_report.json.
"""
)


def convert_m3ed(
    source: str | os.PathLike,
    feature_dims: Mapping[str, int | None] | None = None,
    use_lengths: bool = True,
) -> ConversionResult:
    """`convert_source` with `M3ED_SPEC`; the source format is described in `SOURCE_FORMAT_HELP`."""
    return convert_source(source, M3ED_SPEC, feature_dims=feature_dims, use_lengths=use_lengths)


def main(argv: Sequence[str] | None = None) -> int:
    specs = {M3ED_SPEC.config_name: M3ED_SPEC}
    return run_conversion_cli(argv, specs, "CARAT's M3ED feature file", SOURCE_FORMAT_HELP)


if __name__ == "__main__":
    sys.exit(main())
