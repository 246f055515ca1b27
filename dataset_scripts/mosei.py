"""CMU-MOSEI (multi-label emotions) from the MMSA or TAILOR/CARAT feature files.

Usage::

    python -m dataset_scripts.mosei --source aligned_50.pkl --output data/mosei_aligned \
        --config aligned
    python -m dataset_scripts.mosei --source unaligned_50.pkl --output data/mosei_unaligned \
        --config unaligned --hub_layout data/mosei_hub
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from .cli import run_conversion_cli
from .conversion import ConversionResult, convert_source
from .labels import MOSEI_LABELS
from .sources import MMSA_LENGTH_KEYS, DatasetSpec

__all__ = ["MOSEI_SPECS", "SOURCE_FORMAT_HELP", "convert_mosei", "main"]

_DESCRIPTION = (
    "CMU-MOSEI utterances with six multi-label emotions, as pre-extracted feature sequences: text "
    "(BERT 768 in MMSA's files, GloVe 300 in MulT/TAILOR's), audio COVAREP 74, visual Facet 35."
)

MOSEI_SPECS: dict[str, DatasetSpec] = {
    "aligned": DatasetSpec(
        name="mosei",
        config_name="aligned",
        label_spec=MOSEI_LABELS,
        expected_dims={"text": None, "audio": 74, "visual": 35},
        pretty_name="CMU-MOSEI emotions (pre-extracted features)",
        description=_DESCRIPTION + " Word-aligned: all three sequences have 50 steps.",
    ),
    "unaligned": DatasetSpec(
        name="mosei",
        config_name="unaligned",
        label_spec=MOSEI_LABELS,
        expected_dims={"text": None, "audio": 74, "visual": 35},
        # MMSA's unaligned file stores the real audio/vision lengths of its zero-padded sequences.
        length_keys=MMSA_LENGTH_KEYS,
        pretty_name="CMU-MOSEI emotions (pre-extracted features)",
        description=_DESCRIPTION + " Unaligned: each modality keeps its own frame rate.",
    ),
}

SOURCE_FORMAT_HELP = (
    """\
expected source format
  A pickle (MMSA aligned_50.pkl / unaligned_50.pkl with a `tgt` entry added per sample, as the
  reference implementation's data_process.py does) or a torch .pt file (TAILOR/CARAT), holding
      {'train': SPLIT, 'valid': SPLIT, 'test': SPLIT}        ('validation' is accepted for 'valid')
  where each SPLIT is a dict with
      text   : 'src-text'   or 'text'    [N, L, D] array, or a list of N [L_i, D] arrays
      audio  : 'src-audio'  or 'audio'   idem (COVAREP, dim 74)
      visual : 'src-visual' or 'vision'  idem (Facet, dim 35)
      tgt    : N token lists [2, emotion tokens..., 3]; tokens """
    + MOSEI_LABELS.token_summary()
    + """
               (dataset_scripts/labels.py)
      id     : optional sample ids (MMSA)
  Other keys (raw_text, regression_labels, ...) are ignored. With --config unaligned, MMSA's
  'audio_lengths' / 'vision_lengths' cut the zero-padded sequences to their real length (turn off
  with --keep_padding). If audio and visual come with each other's dims (35 vs 74) they are swapped
  back, with a warning.

  Files are read without running code from them: pickles through a restricted unpickler that
  only accepts numpy arrays and Python containers, .pt files with torch.load(weights_only=True).
  Non-finite values (COVAREP has -inf) are replaced by 0 and counted in cleaning_report.json.
"""
)


def convert_mosei(
    source: str | os.PathLike,
    config: str = "aligned",
    feature_dims: Mapping[str, int | None] | None = None,
    use_lengths: bool = True,
) -> ConversionResult:
    """`convert_source` with the `config` (`"aligned"` or `"unaligned"`) of `MOSEI_SPECS`; the
    source format is described in `SOURCE_FORMAT_HELP`."""
    if config not in MOSEI_SPECS:
        raise ValueError(f"config must be one of {sorted(MOSEI_SPECS)}; got {config!r}")
    return convert_source(
        source, MOSEI_SPECS[config], feature_dims=feature_dims, use_lengths=use_lengths
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_conversion_cli(argv, MOSEI_SPECS, "CMU-MOSEI feature files", SOURCE_FORMAT_HELP)


if __name__ == "__main__":
    sys.exit(main())
