"""Fast start-up: commands that need no kernel import neither torch, Triton nor Hypothesis, and
built-in targets are registered lazily, by name, from `kfuzz.targets.builtin.MODULES`.

Each import check runs in a fresh interpreter: this test process has imported torch already."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kfuzz.errors import UnknownTarget
from kfuzz.targets import registry
from kfuzz.targets.builtin import BUILTIN, MODULES

DATA = Path(__file__).resolve().parent / "data"
HEAVY = ("torch", "triton", "hypothesis")

# Runs the CLI's main on argv[1:] in this fresh process, then prints the heavy modules it
# imported as JSON on stderr's last line (stdout is the command's own).
CLI_PROBE = textwrap.dedent("""
    import json, sys
    from kfuzz.cli.app import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --help
        code = exc.code or 0
    sys.stdout.flush()
    heavy = [m for m in HEAVY if m in sys.modules]
    print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
""").replace("HEAVY", repr(HEAVY))


def _probe(code: str, *args: str, cwd: Path | None = None) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=cwd)
    assert done.stderr.strip(), f"no report from the probe (exit {done.returncode})"
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the test corpus and the fingerprint of one of its findings."""
    db = tmp_path / "corpus.db"
    shutil.copy(DATA / "corpus.db", db)
    from kfuzz.store.corpus import CorpusStore

    with CorpusStore(db, read_only=True) as store:
        fingerprint = next(store.findings(limit=1))["fingerprint"]
    return db, fingerprint


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["run", "--help"],
    ["corpus", "list", "--db", "{db}"],
    ["corpus", "list", "--json", "--db", "{db}"],
    ["corpus", "show", "{id}", "--db", "{db}"],
    ["corpus", "show", "{id}", "--json", "--db", "{db}"],
    ["corpus", "export", "{id}", "--db", "{db}"],
    ["corpus", "rm", "{id}", "--db", "{db}"],
    ["corpus", "merge", "{db}", "--into", "{tmp}/merged.db"],
    ["targets", "--names"],
    ["targets", "--names", "--json"],
], ids=lambda argv: " ".join(a for a in argv if "{" not in a))
def test_commands_without_kernels_import_no_torch(corpus, tmp_path, argv):
    db, fingerprint = corpus
    args = [a.format(db=db, id=fingerprint[:12], tmp=tmp_path) for a in argv]
    report, out = _probe(CLI_PROBE, *args)
    assert report["code"] == 0
    assert out.strip()  # the command printed what it prints
    assert report["heavy"] == []


def test_kernel_commands_do_import_torch():
    # The probe can see an import: `targets` without --names describes every target.
    report, out = _probe(CLI_PROBE, "targets", "--json")
    assert report["code"] == 0
    assert "torch" in report["heavy"] and "hypothesis" in report["heavy"]
    assert set(json.loads(out)["targets"][0]) >= {"name", "kernels", "oracles"}


def test_manifest_lists_what_each_module_registers():
    code = textwrap.dedent("""
        import importlib, json, sys
        from kfuzz.targets import registry as targets
        from kfuzz.targets.builtin import MODULES

        registered = {}
        original = targets.register

        def register(target, **kwargs):
            # The built-in module declaring it: the innermost caller listed in MODULES (it
            # may call register through kfuzz.targets.declare).
            frame = sys._getframe(1)
            while frame.f_globals["__name__"] not in MODULES:
                frame = frame.f_back
            registered.setdefault(frame.f_globals["__name__"], []).append(target.name)
            return original(target, **kwargs)

        targets.register = register  # before any built-in module binds it
        for module in MODULES:
            importlib.import_module(module)
        print(json.dumps(registered), file=sys.stderr)
    """)
    registered, _ = _probe(code)
    assert {m: sorted(n) for m, n in registered.items()} == {
        m: sorted(n) for m, n in MODULES.items()
    }, "a module of kfuzz.targets.builtin registers other targets than kfuzz.targets.builtin.MODULES lists"
    assert len(BUILTIN) == sum(len(n) for n in MODULES.values())  # no name listed twice


def test_get_imports_only_the_module_of_that_target(tmp_path):
    # A plugin that builds on a built-in: the built-in is loaded by using it, and it is not
    # recorded as coming from the plugin.
    (tmp_path / "mine.py").write_text(textwrap.dedent("""
        from dataclasses import replace
        from kfuzz.targets.registry import get, register

        register(replace(get("ops.softmax"), name="mine.softmax"))
    """))
    code = textwrap.dedent("""
        import json, sys
        from kfuzz.targets import registry as targets
        names = targets.names()
        before = [m for m in ("torch", "kfuzz.targets.builtin.ops") if m in sys.modules]
        added = targets.load_plugin("mine.py")
        targets.get("dsv4.q_norm_rope")  # dsv4 imports ops, and nothing else
        print(json.dumps({
            "names": names, "before": before, "added": added,
            "loaded": sorted(m for m in sys.modules if m.startswith("kfuzz.targets.builtin.")),
            "triton": "triton" in sys.modules,
            "softmax_plugins": targets.plugins_for("ops.softmax"),
            "mine_plugins": targets.plugins_for("mine.softmax"),
            "names_after": targets.names(),
        }), file=sys.stderr)
    """)
    report, _ = _probe(code, cwd=tmp_path)
    assert report["names"] == sorted(BUILTIN)
    assert report["before"] == []
    assert report["loaded"] == ["kfuzz.targets.builtin.dsv4", "kfuzz.targets.builtin.ops"]
    assert report["triton"] is False
    assert report["added"] == ["mine.softmax"]
    assert report["softmax_plugins"] == [] and len(report["mine_plugins"]) == 1
    assert report["names_after"] == sorted([*BUILTIN, "mine.softmax"])


def test_registering_a_builtin_leaves_its_referenced_kernels_unimported():
    # Kernels and oracles given as "module:function" are imported by their first call.
    code = textwrap.dedent("""
        import json, sys
        from kfuzz.targets import registry as targets
        target = targets.get("dsv4.sparse_attn")
        lazy = ("kfuzz.kernels.deepseek_v4", "kfuzz.oracles.deepseek_v4", "triton")
        before = [m for m in lazy if m in sys.modules]
        target.oracles["fp64"].fn.__signature__  # what a call that does not fit reads
        print(json.dumps({"before": before, "after": [m for m in lazy if m in sys.modules]}),
              file=sys.stderr)
    """)
    report, _ = _probe(code)
    assert report["before"] == []
    assert "kfuzz.oracles.deepseek_v4" in report["after"] and "triton" not in report["after"]


def test_targets_names_lists_the_plugin_targets_without_torch(tmp_path):
    # A target needs no torch to be declared: its callables import what they use when called.
    (tmp_path / "light.py").write_text(textwrap.dedent("""
        from kfuzz.judge.comparator import Comparator
        from kfuzz.targets.registry import OutputSpec, Target, Variant, register

        def double(x):
            return x * 2

        register(Target(
            name="light.double", doc="doubles", signature="fn(x) -> y",
            cases=lambda max_numel: None, inputs=lambda case, gen: {},
            expect=lambda case: {"y": OutputSpec((1,), None)},
            kernels={"k": Variant("k", double)}, oracles={"o": Variant("o", double)},
            comparators={"y": Comparator()}, default_kernel="k", default_oracle="o"))
    """))
    report, out = _probe(CLI_PROBE, "targets", "--names", "--plugin", "light.py", cwd=tmp_path)
    assert report == {"code": 0, "heavy": []}
    assert out.split() == sorted([*BUILTIN, "light.double"])


def test_names_match_the_full_listing(kfuzz):
    names = kfuzz("targets", "--names", "--json")
    full = kfuzz("targets", "--json")
    assert names.code == full.code == 0
    assert names.json()["targets"] == [t["name"] for t in full.json()["targets"]]
    assert set(BUILTIN) <= set(names.json()["targets"])
    assert kfuzz("targets", "--names").out.split() == names.json()["targets"]


def test_a_builtin_name_registered_again_is_refused_before_first_use():
    # register() loads the built-in of that name first, so a clash is found whether or not
    # the built-in had been used (here it had not: its module was never imported).
    code = textwrap.dedent("""
        import json, sys
        from dataclasses import replace
        from kfuzz.targets import registry as targets
        from kfuzz.errors import PluginError
        clone = replace(targets.get("ops.softmax"), name="dsv4.q_norm_rope")
        loaded = "kfuzz.targets.builtin.dsv4" in sys.modules
        try:
            targets.register(clone)
            error = None
        except PluginError as exc:
            error = str(exc)
        targets.register(clone, replace=True)
        print(json.dumps({"loaded_before": loaded, "error": error,
                          "replaced": targets.get("dsv4.q_norm_rope") is clone}), file=sys.stderr)
    """)
    report, _ = _probe(code)
    assert report == {
        "loaded_before": False,
        "error": "target 'dsv4.q_norm_rope' is registered twice; rename one of them",
        "replaced": True,
    }


def test_unknown_target_suggests_from_every_name():
    with pytest.raises(UnknownTarget) as info:
        registry.get("dsv4.q_norm_rop")
    assert "did you mean 'dsv4.q_norm_rope'" in str(info.value)
