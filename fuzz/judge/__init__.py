"""Judging a kernel's outputs against the oracle's: `Comparator` (modes and the tolerance
table) and the comparison stages and metrics (`compare`)."""
