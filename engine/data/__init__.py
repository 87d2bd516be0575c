"""The data a workspace trains and is scored on: corpora, named datasets, tokenizers, and the
train.py profiles that fit each device."""
