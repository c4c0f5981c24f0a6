"""Running a case: `Job` in, `Outcome` out (`executor`), in this process or in an isolated
worker process (`isolation`, `worker`); a `Finding` is a failing case with its identity."""
