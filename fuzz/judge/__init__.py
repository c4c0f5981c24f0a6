"""Judging a kernel's outputs against the oracle's: `Comparator` (the settings; `comparator`),
the per-dtype defaults and ULP spacing (`tolerance`), the comparison stages (`stages`), the
metrics they produce (`metrics`) and `compare`, which runs the stages (`compare`)."""
