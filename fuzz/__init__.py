"""kfuzz engine: targets, strategies, comparison, search, corpus and replay."""

__version__ = "0.1.0"
