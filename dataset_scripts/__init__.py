"""Dataset builders for LDDU: source feature files -> Hugging Face `datasets` (plain Python, not
remote code).

Modules:

* `mosei`, `m3ed`: one per dataset, each with a command line (`python -m dataset_scripts.mosei
  --help`);
* `common`: the shared conversion pipeline (validation, cleaning, Arrow building);
* `labels`: every dataset's emotion order and `tgt` token map;
* `safe_load`: loading pickle/torch source files without running code from them;
* `saving`: atomic `save_to_disk`, the Hub layout (parquet + dataset card), upload;
* `loading`: `load_prepared`, `InMemoryMultimodalDataset`, `MultimodalDataCollator` for training;
* `synthetic`: the built-in synthetic data and raw source files for tests.
"""
