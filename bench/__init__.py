"""Benchmarks of kfuzz: overhead against a hand-written loop, bug-finding power on seeded
faults, corpus scale. Run each as `python -m bench.NAME [--quick]`; results go to
bench/results/*.json and `python -m bench.render` turns them into BENCHMARKS.md."""
