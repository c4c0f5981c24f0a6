"""JUnit XML for CI systems: `kfuzz run --junit FILE` and `kfuzz replay --junit FILE`.

One <testcase> per finding of a run (a failure each; a campaign with no finding gives one
passing testcase, so that a clean run is not read as "no tests"), and one per replayed finding
(still failing: a failure; fixed: a pass; could not be run: an error). Test names are the
readable ids the pytest plugin uses too: `target[kernel-oracle-id]`. Times: a run's testcases
share their campaign's seconds (`finding_seconds`); a replayed finding's is its replay's own
time when the result carries `seconds`, else a share of the replay's wall time when given.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfuzz.errors import KfuzzError
from kfuzz.present.text import percent
from kfuzz.store.rows import short_id

# XML 1.0 forbids most control characters even when escaped; a kernel's error message or a
# stored string may carry them (terminal colour codes, NUL).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def finding_name(target: str, kernel: str, oracle: str, fingerprint: str) -> str:
    """A readable test id for a finding: `target[kernel-oracle-shortid]`. A kernel or oracle
    given as "path/to/file.py:function" is shortened to "file.py:function"."""
    return f"{target}[{_short_ref(kernel)}-{_short_ref(oracle)}-{short_id(fingerprint)}]"


def _short_ref(ref: str) -> str:
    """A kernel or oracle reference without the directories of its file."""
    module, sep, attr = ref.rpartition(":")
    if sep and ("/" in module or "\\" in module):
        module = re.split(r"[\\/]", module)[-1]
    # "::" separates parts of a pytest node id.
    return (f"{module}{sep}{attr}" if sep else ref).replace("::", ":")


def outputs_text(outputs: Mapping[str, Any] | None, error: str | None = None) -> str:
    """The comparison messages of an outcome's outputs (`Outcome.outputs` or a stored
    metrics column), one block per output, then the error if any."""
    blocks = []
    for name, metrics in (outputs or {}).items():
        if isinstance(metrics, Mapping):
            verdict = "pass" if metrics.get("passed") else "FAIL"
            blocks.append(f"output {name}: {verdict}\n{metrics.get('message', '')}".rstrip())
    if error:
        blocks.append(f"error: {error}")
    return "\n\n".join(blocks)


@dataclass
class JunitCase:
    """One <testcase>. outcome: "pass", "failure", "error" or "skipped"."""

    classname: str
    name: str
    outcome: str = "pass"
    message: str = ""
    kind: str = ""
    text: str = ""
    seconds: float = 0.0
    properties: dict[str, str] = field(default_factory=dict)


def _clean(text: Any) -> str:
    return _NOT_XML.sub("?", str(text))


def check_writable(path: str | Path) -> None:
    """Raise KfuzzError (the message `write_junit` gives) unless a file could be written at
    `path`: called before a run, so that a bad --junit path fails in a second, not after the
    budget is spent."""
    target = Path(path)
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    problem = None
    if target.is_dir():
        problem = "it is a directory"
    elif not parent.is_dir():
        problem = f"{str(parent)!r} is not a directory"
    elif not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        problem = "permission denied"
    if problem:
        raise KfuzzError(f"--junit {str(path)!r}: cannot write it ({problem}); "
                         "pass a writable file path")


def write_junit(path: str | Path, suite: str, cases: Sequence[JunitCase]) -> Path:
    """Write `cases` as one <testsuite> named `suite` inside <testsuites>, to `path`
    (parents created). Returns the path. Raises KfuzzError when it cannot be written."""
    failures = sum(c.outcome == "failure" for c in cases)
    errors = sum(c.outcome == "error" for c in cases)
    skipped = sum(c.outcome == "skipped" for c in cases)
    seconds = f"{sum(c.seconds for c in cases):.3f}"
    root = ET.Element("testsuites", name="kfuzz", tests=str(len(cases)),
                      failures=str(failures), errors=str(errors), time=seconds)
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                         failures=str(failures), errors=str(errors), skipped=str(skipped), time=seconds,
                         timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    for case in cases:
        element = ET.SubElement(node, "testcase", classname=_clean(case.classname),
                                name=_clean(case.name), time=f"{case.seconds:.3f}")
        if case.properties:
            props = ET.SubElement(element, "properties")
            for key, value in case.properties.items():
                ET.SubElement(props, "property", name=_clean(key), value=_clean(value))
        if case.outcome in ("failure", "error"):
            detail = ET.SubElement(element, case.outcome, message=_clean(case.message),
                                   type=_clean(case.kind or case.outcome))
            detail.text = _clean(case.text)
        elif case.outcome == "skipped":
            ET.SubElement(element, "skipped", message=_clean(case.message))
    ET.indent(root)
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise KfuzzError(f"--junit {str(path)!r}: cannot write it ({exc.strerror}); "
                         "pass a writable file path") from None
    return target


def _shrink_seconds(finding: Any) -> float | None:
    seconds = (finding.shrink or {}).get("seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds >= 0:
        return float(seconds)
    return None


def finding_seconds(result: Any) -> list[float]:
    """The seconds of each finding's testcase in a campaign (a `CampaignResult`): the
    campaign's search time (its seconds less the findings' shrink seconds) split evenly over
    its findings, plus each finding's own shrink seconds where known. They add up to the
    campaign's seconds, so the suite's time is the run's."""
    findings = list(result.findings)
    if not findings:
        return []
    shrink = [_shrink_seconds(f) for f in findings]
    total = max(float(result.seconds or 0.0), 0.0)
    search = max(total - sum(s or 0.0 for s in shrink), 0.0)
    return [search / len(findings) + (s or 0.0) for s in shrink]


def run_cases(results: Iterable[Any]) -> list[JunitCase]:
    """Testcases for a run's campaigns (`kfuzz.search.CampaignResult`s): one failure per
    finding, one pass per campaign that found nothing. Times: `finding_seconds`, or the
    campaign's seconds for its one passing testcase."""
    cases = []
    for result in results:
        classname = f"kfuzz.run.{result.target}"
        for finding, seconds in zip(result.findings, finding_seconds(result), strict=True):
            outcome = finding.outcome
            shrink = finding.shrink or {}
            cases.append(JunitCase(
                classname=classname,
                name=finding_name(finding.target, finding.kernel, finding.oracle,
                                  finding.stored_as or finding.fingerprint),
                outcome="failure",
                kind=finding.failure,
                message=f"{finding.kind} finding: mismatch ratio "
                        f"{percent(outcome.worst_ratio())}",
                text=f"case: {json.dumps(finding.case)}\n\n"
                     + outputs_text(outcome.outputs, outcome.error),
                seconds=seconds,
                properties={"fingerprint": finding.stored_as or finding.fingerprint,
                            "kind": finding.kind,
                            "seed": str(result.seed),
                            **({"shrunk_size": str(shrink["size_after"])}
                               if "size_after" in shrink else {})},
            ))
        if not result.findings:
            cases.append(JunitCase(
                classname=classname,
                name=f"{result.target}[{result.kernel}-{result.oracle}]",
                seconds=result.seconds,
                properties={"examples": str(result.examples), "seed": str(result.seed)},
            ))
    return cases


def _own_seconds(result: Any) -> float | None:
    seconds = getattr(result, "seconds", None)
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds >= 0:
        return float(seconds)
    return None


def replay_cases(results: Iterable[Any], details: Mapping[str, str] | None = None, *,
                 seconds: float | None = None) -> list[JunitCase]:
    """Testcases for replayed findings (`kfuzz.store.replay.ReplayResult`s). details: fingerprint ->
    the text of its latest replay (see `replay_details`), shown under a failure. A testcase's
    time is its replay's own `seconds` where the result has one; seconds: the wall time of
    the whole replay, of which the results without their own time share what the others did
    not use, evenly."""
    details = details or {}
    results = list(results)
    own = [_own_seconds(r) for r in results]
    missing = sum(s is None for s in own)
    share = 0.0
    if seconds is not None and missing:
        share = max(float(seconds) - sum(s or 0.0 for s in own), 0.0) / missing
    cases = []
    for r, mine in zip(results, own, strict=True):
        case = JunitCase(
            classname=f"kfuzz.store.replay.{r.target}",
            name=finding_name(r.target, r.kernel, r.oracle, r.fingerprint),
            seconds=share if mine is None else mine,
            properties={"fingerprint": r.fingerprint},
        )
        if r.status == "fail":
            case.outcome, case.kind = "failure", "still failing"
            case.message = (f"still failing: mismatch ratio {percent(r.mismatch_ratio)} "
                            f"(stored {percent(r.stored_ratio)})")
            case.text = details.get(r.fingerprint, r.error or "")
        elif r.status == "error":
            case.outcome, case.kind = "error", "replay error"
            case.message = f"could not be replayed: {r.error}"
            case.text = r.error or ""
        cases.append(case)
    return cases


def replay_details(store: Any, fingerprints: Iterable[str]) -> dict[str, str]:
    """fingerprint -> the comparison messages of that finding's latest replay, read from a
    corpus (a `kfuzz.store.corpus.CorpusStore`)."""
    from kfuzz.store.rows import latest_replays, replay_outputs

    return {key: outputs_text(replay_outputs(row), row.get("error"))
            for key, row in latest_replays(store, list(fingerprints)).items()}
