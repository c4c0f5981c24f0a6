"""The findings log's reproducers: every script that docs/findings.md links is run in a fresh
interpreter and still shows its defect (exit 1 and the message naming it), and every script in
docs/findings/ is linked from the log, so the two cannot drift apart. The scripts run with kfuzz
and torch unimportable: they need only NumPy and the library. A script whose library is not
installed is skipped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "docs" / "findings.md"
SCRIPTS = ROOT / "docs" / "findings"
# Script name -> (the modules it needs, what it prints while the defect is present).
EXPECTED = {
    "ort_mha_unidirectional.py": (("onnx", "onnxruntime"),
                                  "FAIL: no single causal alignment masks every row"),
    "ort_gqa_no_present.py": (("onnx", "onnxruntime"),
                              "FAIL: without present_key/present_value the output is wrong"),
    "jax_jit_fp16_attention.py": (("jax",), "'F16_F16_F32' is not supported by dot_general"),
    "jax_jit_bf16_single_key.py": (("jax",), "not supported by the ElementalIrEmitter: "
                                            "ALG_DOT_BF16_BF16_F32"),
}
# Runs the script as __main__ with kfuzz and torch made unimportable.
RUNNER = ("import runpy, sys; sys.modules['torch'] = None; sys.modules['kfuzz'] = None; "
          "sys.argv = [sys.argv[1]]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _linked() -> list[str]:
    """The scripts under docs/findings/ that the log links, in order."""
    links = re.findall(r"\]\((findings/[^)\s#]+\.py)\)", LOG.read_text())
    return list(dict.fromkeys(Path(link).name for link in links))


def test_every_script_is_linked_from_the_log_and_known_here():
    on_disk = sorted(p.name for p in SCRIPTS.glob("*.py"))
    assert on_disk, "docs/findings/ holds no script"
    assert sorted(_linked()) == on_disk, "docs/findings.md and docs/findings/*.py differ"
    assert sorted(EXPECTED) == on_disk, "a script without its expected message in this test"


@pytest.mark.parametrize("name", _linked())
def test_reproducer_still_shows_its_defect(name, tmp_path):
    modules, message = EXPECTED[name]
    for module in modules:
        pytest.importorskip(module)
    # -I: a fresh interpreter that sees neither the checkout nor the user's site settings.
    ran = subprocess.run([sys.executable, "-I", "-c", RUNNER, str(SCRIPTS / name)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert message in ran.stdout, ran.stdout + ran.stderr
