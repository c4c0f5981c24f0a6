"""The run path: what `kfuzz run`, `kfuzz.fuzz` and the benchmarks call (`runner.run`): the
plan (`plan`), executors (`executors`), one campaign and the runner interface (`campaigns`),
and the runners: this process (`campaigns.run_sequential`), worker processes (`parallel`) and
Ray (`ray`)."""
