"""Smoke test of `benchmarks/bench_goemotions.py --quick` on a tiny generated GoEmotions folder."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from dataset_scripts.goemotions import build
from dataset_scripts.labels import GOEMOTIONS_LABELS
from dataset_scripts.saving import save_prepared
from tests.conftest import REPO_ROOT

#: One cue word per class; fillers carry no label information.
CUES = ("furious", "gross", "scared", "happy", "okay", "lonely", "shocked")
FILLERS = ("the", "a", "of", "today", "really", "people", "thing", "!", ".")


def load_benchmark():
    path = REPO_ROOT / "benchmarks" / "bench_goemotions.py"
    spec = importlib.util.spec_from_file_location("bench_goemotions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_goemotions(folder, seed: int = 0) -> None:
    """TSV files whose labels are readable from cue words (every class occurs in every split)."""
    generator = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name, size in (("train.tsv", 140), ("dev.tsv", 56), ("test.tsv", 56)):
        lines = []
        for row in range(size):
            labels = [row % 7]
            if generator.random() < 0.2:
                labels.append(int(generator.integers(7)))
            labels = sorted(set(labels))
            words = [CUES[label] for label in labels]
            words += list(generator.choice(FILLERS, size=int(generator.integers(2, 8))))
            generator.shuffle(words)
            lines.append(f"{' '.join(words)}\t{','.join(map(str, labels))}\tc{row}")
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "labels.txt").write_text("\n".join(GOEMOTIONS_LABELS))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_goemotions")
    write_tiny_goemotions(root / "source")
    generator = np.random.default_rng(1)
    vectors = {word: generator.normal(size=8).astype(np.float32) for word in (*CUES, *FILLERS)}
    result = build(root / "source", vectors=vectors, max_length=6)
    return save_prepared(result.dataset_dict, root / "prepared")


def test_quick_benchmark_runs_end_to_end(prepared, tmp_path):
    benchmark = load_benchmark()
    output = tmp_path / "bench.json"
    argv = ["--quick", "--data_dir", str(prepared), "--work_dir", str(tmp_path / "work")]
    report = benchmark.main([*argv, "--output", str(output)])

    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    assert report["label_names"] == list(GOEMOTIONS_LABELS)
    assert list(report["baseline"]["variants"]) == [
        "threshold_0.5",
        "balanced_0.5",
        "global_tuned",
        "per_label_tuned",
    ]
    lddu = report["lddu"]
    assert lddu["chosen"] in ("global_tuned", "per_label_tuned")
    assert len(lddu["variants"]["per_label_tuned"]["threshold"]) == 7
    assert np.ndim(lddu["variants"]["global_tuned"]["threshold"]) == 0
    for variants in (lddu["variants"], report["baseline"]["variants"]):
        for variant in variants.values():
            for split in ("validation", "test"):
                for key in ("f1_micro", "f1_macro", "accuracy_jaccard"):
                    assert 0.0 <= variant[split][key] <= 1.0
    # The test figures LDDU reports are those train.py measured on its one test pass.
    chosen_test = lddu["variants"]["global_tuned"]["test"]
    for key, value in lddu["train_py_test"].items():
        assert chosen_test[key] == pytest.approx(value, abs=1e-6)
    # The cue words make the task easy for the linear baseline: the path computes real scores.
    assert report["baseline"]["variants"]["global_tuned"]["test"]["f1_micro"] > 0.6
    assert (tmp_path / "work" / "lddu" / "model.safetensors").is_file()


def test_threshold_choice_reads_validation_only():
    benchmark = load_benchmark()

    def variant(validation_micro, validation_macro, test_micro):
        return {
            "validation": {"f1_micro": validation_micro, "f1_macro": validation_macro},
            "test": {"f1_micro": test_micro, "f1_macro": test_micro},
        }

    variants = {"global_tuned": variant(0.6, 0.3, 0.9), "per_label_tuned": variant(0.55, 0.4, 0.1)}
    assert benchmark.choose_lddu_variant(variants) == "per_label_tuned"
    variants["per_label_tuned"] = variant(0.6, 0.3, 0.1)  # a tie goes to the global threshold
    assert benchmark.choose_lddu_variant(variants) == "global_tuned"
