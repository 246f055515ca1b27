"""Dataset builders: source feature files -> Hugging Face `datasets` (plain Python, not remote code).

Knows no model family: the loader receives the feature extractor from its caller. The modules, one
job each, are listed in docs/data.md.
"""
