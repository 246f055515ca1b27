"""Dataset builders: source feature files -> Hugging Face `datasets` (plain Python, not remote code).

Knows no model family: the loader receives the feature extractor from its caller.

Modules:

* `mosei`, `m3ed`, `goemotions`: one per dataset, each with a command line (`python -m
  dataset_scripts.mosei --help`);
* `sources`: loading a source file's splits, validating and cleaning their arrays (`DatasetSpec`,
  `SplitArrays`, `parse_source`);
* `building`: `SplitArrays` -> `DatasetDict` with explicit `Features`, and the dataset metadata;
* `conversion`: the whole conversion of one source file (`convert_source`);
* `cli`: the options every builder's command line shares, and the source-file builders' CLI;
* `labels`: every dataset's emotion order and `tgt` token map;
* `modalities`: the one modality order (`MODALITIES`) and split order (`SPLITS`);
* `safe_load`: loading pickle/torch source files without running code from them;
* `saving`: atomic `save_to_disk`, the Hub layout (parquet + dataset card), upload;
* `loading`: `load_prepared`, `InMemoryMultimodalDataset`, `MultimodalDataCollator` for training;
* `synthetic`: the built-in synthetic data and raw source files for tests;
* `raw_features`: raw text and speech -> frames (the functions every model folder's processor
  copies), the settings saved beside a dataset built from raw inputs; `raw_media`: that builder;
  `text_encoders`: the packaged offline text encoder;
* `io`: atomic file writing and output-folder preparation.
"""
