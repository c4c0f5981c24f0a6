"""Start-up: how long a command that needs no kernel takes, as a fresh process.

Times, each as a separate process with its output sent to /dev/null:
- `kfuzz corpus list --db ONE.db` on a one-row corpus (one small `ops.rmsnorm` finding),
- `kfuzz --help`,
- `kfuzz targets --names` (every target's name, no kernel imported),
- `python -c "import sqlite_utils"`: the floor a SQLite command line built on sqlite-utils pays,
- `python -c "import torch"`: what each command paid before kernels were imported lazily.
After one untimed warm-up of each, the commands run in turn, `runs` rounds (alternating, so
that a change in the machine's load reaches all of them alike); each reports the median. The
issue's bar: `kfuzz corpus list` within 2x of `import sqlite_utils`. `kfuzz` is the console
script installed beside this Python.

    python -m bench.startup [--quick] [--runs 5]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kfuzz.store.corpus import CorpusStore

from bench import common
from bench.corpus_scale import findings

GOAL = 2.0  # corpus list / import sqlite_utils, medians


def kfuzz_command() -> list[str]:
    """The `kfuzz` console script beside this interpreter, else `python -m kfuzz.cli`."""
    script = Path(sys.executable).parent / "kfuzz"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kfuzz.cli"]


def commands(one_row_db: Path) -> dict[str, list[str]]:
    """What is timed, by name: each an argv run as its own process."""
    kfuzz = kfuzz_command()
    return {
        "corpus_list": [*kfuzz, "corpus", "list", "--db", str(one_row_db)],
        "help": [*kfuzz, "--help"],
        "targets_names": [*kfuzz, "targets", "--names"],
        "import_sqlite_utils": [sys.executable, "-c", "import sqlite_utils"],
        "import_torch": [sys.executable, "-c", "import torch"],
    }


def shown(argv: list[str], db: Path) -> str:
    """`argv` as a person would type it: `kfuzz ...` / `python ...`, the corpus as ONE.db."""
    words = [a.replace(str(db), "ONE.db") for a in argv]
    if words[0] == sys.executable:
        words[0] = "python"
    elif Path(words[0]).name == "kfuzz":
        words[0] = "kfuzz"
    return " ".join(f'"{w}"' if " " in w else w for w in words)


def seconds(argv: list[str]) -> float:
    """Wall seconds of one run of `argv`, stdout to /dev/null. Raises CalledProcessError."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - start


def measure(runs: int, tmp: Path) -> dict[str, Any]:
    """The timings of every command (see the module docstring) over `runs` rounds."""
    db = tmp / "one.db"
    with CorpusStore(db) as store:
        store.record_findings(findings(1))
        assert store.count() == 1
    todo = commands(db)
    for argv in todo.values():
        seconds(argv)  # warm-up, untimed: bytecode caches and the page cache
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(runs):
        for name, argv in todo.items():
            times[name].append(seconds(argv))
    return {name: {"command": shown(argv, db), "seconds": [round(t, 4) for t in times[name]],
                   "median_s": round(common.median(times[name]), 4)}
            for name, argv in todo.items()}


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = common.parser(__doc__, "startup.json")
    p.add_argument("--runs", type=int, default=None, help="rounds (default 5; 1 with --quick)")
    args = p.parse_args(argv)
    common.single_thread()
    runs = args.runs or (1 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        timed = measure(runs, Path(tmp))
    ratio = timed["corpus_list"]["median_s"] / timed["import_sqlite_utils"]["median_s"]
    for row in timed.values():
        print(f"{row['command']}: {row['median_s']:.3f} s (median of {runs})", flush=True)
    print(f"corpus list / import sqlite_utils: {ratio:.2f} (goal <= {GOAL:g})")
    common.write(args.out, {"mode": "quick" if args.quick else "full", "runs": runs,
                            "commands": timed, "goal_ratio": GOAL,
                            "corpus_list_over_sqlite_utils": round(ratio, 3)})


if __name__ == "__main__":
    main()
