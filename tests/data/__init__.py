"""Data for the test suite: a small committed corpus and the kernels it names."""
