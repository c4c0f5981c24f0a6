"""JUnit XML from `kfuzz run --junit` and `kfuzz replay --junit`."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from kfuzz.junit import JunitCase, finding_name, run_cases, write_junit
from kfuzz.search import CampaignResult


def _suite(path):
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    return suite, {c.get("name"): c for c in suite.iter("testcase")}


def test_run_writes_one_failing_testcase_per_finding(kfuzz, db_path, tmp_path):
    junit = tmp_path / "reports" / "run.xml"
    run = kfuzz("run", "ops.softmax", "--compare", "exact", "--max-examples", "30", "--seed", "3",
                "--db", db_path, "--json", "--junit", junit)
    assert run.code == 1, run.err
    findings = run.json()["findings"]
    suite, cases = _suite(junit)
    assert suite.get("name") == "kfuzz.run"
    assert int(suite.get("tests")) == int(suite.get("failures")) == len(findings) >= 1
    for f in findings:
        case = cases[f"ops.softmax[eager_lowp-fp64-{f['id']}]"]
        assert case.get("classname") == "kfuzz.run.ops.softmax"
        failure = case.find("failure")
        assert failure.get("type") == f["failure"]
        assert failure.get("message").startswith(f"{f['kind']} finding: mismatch ratio ")
        assert "Mismatched elements:" in failure.text
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["fingerprint"] == f["fingerprint"]


def test_replay_marks_still_failing_as_failures_and_fixed_as_passes(kfuzz, db_path, tmp_path):
    assert kfuzz("run", "ops.softmax", "--compare", "exact", "--max-examples", "30", "--seed", "3",
                 "--db", db_path).code == 1
    failing = tmp_path / "replay.xml"
    assert kfuzz("replay", "--db", db_path, "--junit", failing).code == 1
    suite, cases = _suite(failing)
    assert suite.get("name") == "kfuzz.replay"
    assert int(suite.get("failures")) == int(suite.get("tests")) == len(cases) >= 1
    message = next(iter(cases.values())).find("failure").get("message")
    assert message.startswith("still failing: mismatch ratio ")
    fixed = tmp_path / "fixed.xml"
    res = kfuzz("replay", "--db", db_path, "--kernel", "eager_fp32", "--junit", fixed)
    assert res.code == 0, res.out
    suite, cases = _suite(fixed)
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert len(cases) >= 1 and all("[eager_fp32-fp64-" in name for name in cases)


def test_replay_error_is_a_junit_error(kfuzz, db_path, tmp_path):
    from kfuzz.corpus import CorpusStore

    store = CorpusStore(db_path)
    store.db.execute("insert into findings (fingerprint, target, kernel, oracle, \"case\", "
                     "status, kind, times_seen) values ('ab', 'ops.gone', 'k', 'o', '{}', "
                     "'open', 'shrunk', 1)")
    store.close()
    junit = tmp_path / "r.xml"
    assert kfuzz("replay", "--db", db_path, "--junit", junit).code == 3  # could not replay
    suite, cases = _suite(junit)
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    error = cases["ops.gone[k-o-ab]"].find("error")
    assert error.get("message").startswith("could not be replayed: no target 'ops.gone'")


def test_campaign_without_findings_is_one_passing_testcase(tmp_path):
    result = CampaignResult("ops.rope", "eager_fp32", "fp64", seed=5, examples=40, seconds=1.5)
    path = write_junit(tmp_path / "x.xml", "kfuzz.run", run_cases([result]))
    suite, cases = _suite(path)
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    assert list(cases) == ["ops.rope[eager_fp32-fp64]"]
    assert cases["ops.rope[eager_fp32-fp64]"].get("time") == "1.500"


def test_control_characters_and_markup_survive_as_valid_xml(tmp_path):
    text = "kernel said \x1b[31m<boom> & \"quotes\"\x00"
    path = write_junit(tmp_path / "x.xml", "s", [
        JunitCase("c", "n<1>", outcome="failure", message=text, text=text)])
    suite, cases = _suite(path)
    failure = cases["n<1>"].find("failure")
    assert failure.get("message") == "kernel said ?[31m<boom> & \"quotes\"?"
    assert failure.text == failure.get("message")


@pytest.mark.parametrize(
    "kernel, expected",
    [("eager_lowp", "t[eager_lowp-fp64-0123456789ab]"),
     ("/home/me/work/mine.py:rmsnorm", "t[mine.py:rmsnorm-fp64-0123456789ab]"),
     ("pkg.mod:Cls.fn", "t[pkg.mod:Cls.fn-fp64-0123456789ab]")],
    ids=["variant", "file-path", "module"],
)
def test_finding_name_is_readable(kernel, expected):
    assert finding_name("t", kernel, "fp64", "0123456789abcdef") == expected


def test_unwritable_junit_path_is_one_line_exit_2(kfuzz, db_path, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = kfuzz("run", "ops.softmax", "--max-examples", "3", "--seed", "1", "--db", db_path,
                "--junit", blocker / "x.xml")
    assert res.code == 2
    assert res.err.startswith(f"kfuzz: error: --junit '{blocker / 'x.xml'}': cannot write it")
    assert res.err.count("\n") == 1
