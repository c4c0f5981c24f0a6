"""The corpus (`corpus.CorpusStore`, the only code that speaks SQL), merging corpora and
replaying stored findings."""
