"""JUnit XML from `kfuzz run --junit` and `kfuzz replay --junit`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
from kfuzz.enums import ReplayStatus
from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import Finding
from kfuzz.present.junit import JunitCase, finding_name, replay_cases, run_cases, write_junit
from kfuzz.search.campaign import CampaignResult
from kfuzz.store.replay import ReplayResult


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
    # The campaign's seconds are shared out over its testcases: each has a time, and they add
    # up to the campaign's (the suite's time is the run's).
    (campaign,) = run.json()["campaigns"]
    times = [float(c.get("time")) for c in cases.values()]
    assert all(t > 0 for t in times)
    assert sum(times) == pytest.approx(campaign["seconds"], abs=0.01)
    assert float(suite.get("time")) == pytest.approx(campaign["seconds"], abs=0.01)


def test_replay_marks_still_failing_as_failures_and_fixed_as_passes(kfuzz, db_path, tmp_path):
    # BF16 cases: the FP32 kernel below fixes them (exact comparison of FP32 inputs fails any
    # kernel that is not correctly rounded).
    assert kfuzz("run", "ops.softmax", "--compare", "exact", "--max-examples", "30", "--seed", "3",
                 "--pin", "dtype=bfloat16", "--db", db_path).code == 1
    failing = tmp_path / "replay.xml"
    assert kfuzz("replay", "--db", db_path, "--junit", failing).code == 1
    suite, cases = _suite(failing)
    assert suite.get("name") == "kfuzz.store.replay"
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
    from kfuzz.store.corpus import CorpusStore

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


def _finding(n: int, shrink: dict | None = None) -> Finding:
    return Finding("ops.softmax", "eager_lowp", "fp64", {"shape": [1, n]}, Outcome("fail"),
                   kind="shrunk" if shrink else "peak", shrink=shrink or {})


def test_run_testcases_share_the_campaign_seconds_with_their_own_shrink_time(tmp_path):
    # 10 s: 2 + 3 s of shrinking, 5 s of search shared by the three findings.
    result = CampaignResult("ops.softmax", "eager_lowp", "fp64", seed=1, examples=50,
                            seconds=10.0, findings=[_finding(2, {"seconds": 2.0}),
                                                    _finding(3, {"seconds": 3.0}), _finding(4)])
    path = write_junit(tmp_path / "x.xml", "kfuzz.run", run_cases([result]))
    suite, cases = _suite(path)
    names = [finding_name("ops.softmax", "eager_lowp", "fp64", f.fingerprint)
             for f in result.findings]
    assert [cases[n].get("time") for n in names] == ["3.667", "4.667", "1.667"]
    assert suite.get("time") == "10.000"


def test_run_testcase_times_without_shrink_seconds_split_the_campaign_evenly(tmp_path):
    result = CampaignResult("ops.softmax", "eager_lowp", "fp64", seed=1, seconds=3.0,
                            findings=[_finding(2), _finding(3)])
    assert [c.seconds for c in run_cases([result])] == [1.5, 1.5]
    # Shrink seconds past the campaign's (a clock that disagrees): no negative search share.
    over = CampaignResult("ops.softmax", "eager_lowp", "fp64", seed=1, seconds=1.0,
                          findings=[_finding(2, {"seconds": 4.0}), _finding(3)])
    assert [c.seconds for c in run_cases([over])] == [4.0, 0.0]


def _replayed(key: str, status: ReplayStatus = ReplayStatus.FAIL) -> ReplayResult:
    return ReplayResult(key * 16, "ops.softmax", "eager_lowp", "fp64", status,
                        mismatch_ratio=0.5, stored_ratio=0.5)


def test_replay_testcase_times_are_each_replays_own_or_a_share_of_the_whole(tmp_path):
    timed = [SimpleNamespace(**{**_replayed("a").__dict__, "seconds": 0.25}),
             SimpleNamespace(**{**_replayed("b").__dict__, "seconds": 1.5})]
    assert [c.seconds for c in replay_cases(timed)] == [0.25, 1.5]
    # Results without their own time share what the timed ones left of the replay's seconds.
    mixed = [timed[0], _replayed("c", ReplayStatus.PASS), _replayed("d", ReplayStatus.ERROR)]
    path = write_junit(tmp_path / "r.xml", "kfuzz.store.replay", replay_cases(mixed, seconds=2.25))
    suite, cases = _suite(path)
    assert sorted(c.get("time") for c in cases.values()) == ["0.250", "1.000", "1.000"]
    assert suite.get("time") == "2.250"
    # Nothing measured and no wall time given: 0, as before.
    assert [c.seconds for c in replay_cases([_replayed("e")])] == [0.0]
