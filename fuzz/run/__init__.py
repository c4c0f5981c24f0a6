"""The run path: what `kfuzz run`, `kfuzz.fuzz` and the benchmarks call (`runner.run`): the
plan, the budget, the runners (this process, worker processes, Ray) and the runs table."""
