"""Running case after case keeps freed memory in the process: no fresh pages per case."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# A case's pattern: several blocks of 1.5 MiB made, written and freed together, 20 times.
SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from kfuzz.execute.allocator import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    def case():
        blocks = [torch.ones(196608, dtype=torch.float64) for _ in range(4)]
        return sum(float(b[-1]) for b in blocks)
    for _ in range(3):
        case()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        case()
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _run(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         env={**clean, **env}, check=True, timeout=120).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_kept_for_the_next_case():
    kept, faults_kept = _run("keep")
    _, faults_default = _run("default")
    assert kept == "True"
    # 20 cases of 6 MiB: about 30,000 fresh pages with glibc's defaults, none kept.
    assert faults_kept < 200
    assert faults_default > 10 * faults_kept


def test_the_users_own_allocator_settings_stand():
    kept, _ = _run("keep", MALLOC_TRIM_THRESHOLD_="1000000")
    assert kept == "False"


def test_the_executor_keeps_freed_memory():
    from kfuzz.execute import allocator
    from kfuzz.execute.executor import InProcessExecutor

    InProcessExecutor()
    assert allocator._done is not None
