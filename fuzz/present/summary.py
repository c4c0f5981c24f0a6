"""What `kfuzz` prints: the progress line, a run's summary and its JSON document, the targets
listing (formats from `kfuzz.present.text`)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from kfuzz.present.attribution import attribution_lines
from kfuzz.present.text import number, percent, table
from kfuzz.store.rows import short_id

if TYPE_CHECKING:
    from kfuzz.execute.findings import Finding
    from kfuzz.run.runner import RunReport

METRIC_KEYS = ("mismatches", "numel", "mismatch_ratio", "max_abs", "max_abs_index", "max_rel",
               "worst_index", "rel_l2", "cosine", "nonfinite_actual", "max_ulp",
               "worst_over_allowed")


# Seconds between two progress lines when stderr is not a terminal (a CI log).
LOG_EVERY = 15.0


class Progress:
    """Progress on stderr: on a terminal, one self-overwriting status line (when `enabled`);
    elsewhere (a CI log), a plain line at least every LOG_EVERY seconds while cases run and,
    once the run has gone on that long, one as each target ends: a long run is never silent."""

    def __init__(self, enabled: bool, *, every: float = LOG_EVERY) -> None:
        self.terminal = sys.stderr.isatty()
        self.enabled = enabled and self.terminal
        # KFUZZ_LOG_EVERY (seconds) sets the interval of a log's progress lines.
        self.every = float(os.environ.get("KFUZZ_LOG_EVERY") or every)
        self.last = self.started = time.monotonic()

    def __call__(self, info: dict[str, Any]) -> None:
        if self.terminal:
            if self.enabled:
                sys.stderr.write("\r\033[K" + self.line(info))
                sys.stderr.flush()
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(f"kfuzz: {self.line(info)}", file=sys.stderr, flush=True)

    @staticmethod
    def line(info: dict[str, Any]) -> str:
        """One progress line: target, examples, findings, time left (or spent), shrinking."""
        parts = [info["target"], f"{info['examples']} examples"]
        if info.get("max_examples"):
            parts[-1] += f"/{info['max_examples']}"
        parts.append(f"{info['findings']} findings")
        if info.get("budget"):
            parts.append(f"{max(info['budget'] - info['elapsed'], 0):.0f}s left")
        else:
            parts.append(f"{info['elapsed']:.0f}s")
        if info.get("shrinking"):
            parts.append("shrinking")
        return "  ".join(parts)

    def done(self, run: Any = None) -> None:
        """Clear the line; in a log, say how the target `run` (a CampaignRun) ended."""
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        if self.terminal or run is None or time.monotonic() - self.started < self.every:
            return  # a run short enough to need no log lines gets none
        self.last = time.monotonic()
        target = run.name
        if run.state != "run":
            why = run.skipped if run.failed is None else run.failed
            print(f"kfuzz: {target} {run.state}: {why}", file=sys.stderr, flush=True)
        else:
            r = run.result
            print(f"kfuzz: {target} done: {r.examples} examples, {len(r.findings)} findings, "
                  f"{r.seconds:.1f}s", file=sys.stderr, flush=True)


def finding_summary(finding: Finding) -> dict[str, Any]:
    """A finding as `kfuzz run --json` prints it."""
    outputs = finding.outcome.outputs
    return {
        # The corpus row it went to (`kfuzz corpus show ID`): another finding's when it
        # updated an open one with its signature; "fingerprint" is its own case's.
        "id": short_id(finding.stored_as or finding.fingerprint),
        "fingerprint": finding.fingerprint,
        "stored_as": finding.stored_as,
        "target": finding.target,
        "kernel": finding.kernel,
        "oracle": finding.oracle,
        "kind": finding.kind,
        "failure": finding.failure,
        "signature": finding.signature,
        "case": finding.case,
        "comparator": {name: m.get("comparator") for name, m in outputs.items()},
        "metrics": {name: {k: m.get(k) for k in METRIC_KEYS} for name, m in outputs.items()},
        "error": finding.outcome.error,
        "shrink": finding.shrink or None,
        "attribution": finding.attribution,
    }


def run_document(report: RunReport) -> dict[str, Any]:
    """The `kfuzz run --json` document: one entry of "targets" per run entry (with "entry",
    TARGET@KERNEL, for an entry that named its kernel)."""
    results = report.results()
    return {
        "run": report.run_id, "db": report.db, "status": report.status,
        "budget": report.budget, "exit_code": report.exit_code(),
        "targets": [{k: r[k] for k in ("target", "entry", "state", "skipped", "failed",
                                       "examples", "left_out")
                     if k in r} for r in results],
        "campaigns": [r for r in results if r["state"] == "run"],
        "skipped": [{**_named(r), "reason": r["skipped"]} for r in results
                    if r["state"] == "skipped"],
        "failed": [{**_named(r), "error": r["failed"]} for r in results
                   if r["state"] == "failed"],
        "findings": [finding_summary(f) for f in report.findings],
    }


def _named(result: dict[str, Any]) -> dict[str, Any]:
    """The target of one of `RunReport.results`, and its entry when it named its kernel."""
    return {k: result[k] for k in ("target", "entry") if k in result}


def _warning_text(kind: dict[str, Any]) -> str:
    """One kind of warning a campaign counted (`kfuzz.search.warned.Warned.kinds`)."""
    if "others" in kind:
        return f"{kind['count']}x from {kind['others']} other kinds"
    where = "/".join(str(kind["where"]).replace("\\", "/").split("/")[-3:])
    return f"{kind['count']}x {kind['category']}: {kind['message']} ({where})"


def run_text(report: RunReport) -> str:
    """The `kfuzz run` summary: campaigns, skipped targets, findings."""
    from kfuzz.targets import registry

    rows = []
    for r in report.campaigns:
        rate = f"{r.examples / r.seconds:.0f}/s" if r.seconds else "-"
        rows.append([r.target, r.kernel, r.oracle, str(r.examples), rate,
                     str(len(r.findings)), f"{r.seconds:.1f}s", str(r.seed)])
    parts = [table(rows, ["target", "kernel", "oracle", "examples", "rate", "findings", "time",
                          "seed"])] if rows else []
    from kfuzz.search.coverage import coverage_line

    covered = [f"  {run.name}: {coverage_line(run.result.coverage)}" for run in report.runs
               if run.state == "run" and run.result is not None and run.result.coverage]
    if covered:
        parts.append("coverage:\n" + "\n".join(covered))
    warned = [f"  {run.name}: {_warning_text(kind)}" for run in report.runs
              if run.result is not None for kind in run.result.warnings]
    if warned:
        parts.append("warnings raised while running (counted, not printed):\n"
                     + "\n".join(warned))
    closest = [(run.name, run.closest) for run in report.runs
               if run.result is not None and run.closest]
    if closest:
        parts.append(table([_closest_row(name, c) for name, c in closest],
                           ["closest call", "output", "worst/allowed", "ratio", "max ulp",
                            "rel-L2", "case"]))
    left = [(r.get("entry", r["target"]), field, why) for r in report.results()
            for field, why in r.get("left_out", {}).items()]
    if left:
        parts.append("left out (not implemented by the kernel):\n" + "\n".join(
            f"  {target}: {field} {why}" for target, field, why in left))
    if report.skipped:
        parts.append("skipped (ran no case):\n" + "\n".join(
            f"  {target}: {why}" for target, why in report.skipped))
    if report.failed:
        parts.append("failed (could not be fuzzed):\n" + "\n".join(
            f"  {target}: {why}" for target, why in report.failed))
    if report.status == "interrupted":
        parts.append(f"interrupted: the run was stopped before it ended; the "
                     f"{len(report.findings)} finding(s) found so far are "
                     + ("kept" if report.db is None else f"stored in {report.db}"))
    if not report.findings:
        parts.append("no findings")
        return "\n\n".join(parts)
    rows = []
    for f in report.findings:
        size = f.shrink.get("size_after") if f.shrink else registry.get(f.target).case_size(f.case)
        shrink = ""
        if f.shrink:
            shrink = (f"{f.shrink['size_before']}->{f.shrink['size_after']} in "
                      f"{f.shrink['seconds']:.1f}s" + ("" if f.shrink["complete"] else " (cut)"))
        rows.append([short_id(f.stored_as or f.fingerprint), f.kind, f.failure, f.target,
                     f.kernel, percent(f.outcome.worst_ratio()), str(size or "-"),
                     shrink])
    parts.append(table(rows, ["id", "kind", "failure", "target", "kernel", "ratio", "size",
                              "shrink"]))
    for f in report.findings:
        if f.attribution:
            parts.append("\n".join([f"{short_id(f.stored_as or f.fingerprint)} "
                                     + line for line in attribution_lines(f.attribution)[:1]]
                                    + attribution_lines(f.attribution)[1:]))
    if report.db is not None:
        parts.append(f"stored in {report.db}; `kfuzz corpus show ID` for details, "
                     "`kfuzz replay` to rerun")
    return "\n\n".join(parts)


def _closest_row(name: str, c: Any) -> list[str]:
    """One line of headroom: how near the closest case of entry `name` came to failing."""
    m = c.metrics
    case = json.dumps(c.case, sort_keys=True)
    return [name, c.output, number(m.get("worst_over_allowed"), ".3g"),
            percent(float(m.get("mismatch_ratio") or 0.0)), number(m.get("max_ulp"), ".0f"),
            number(m.get("rel_l2"), ".3g"), case if len(case) <= 80 else case[:77] + "..."]


def targets_text(described: list[dict[str, Any]]) -> str:
    """`kfuzz targets`: each target's signature, inputs, outputs, kernels and oracles."""
    from kfuzz.judge.comparator import Comparator

    lines = []
    for d in described:
        lines.append(f"{d['name']}: {d['doc']}")
        lines.append(f"  signature: {d['signature']}")
        lines += [f"  input  {name}: {doc}" for name, doc in d["inputs"].items()]
        for name, doc in d["outputs"].items():
            comparator = Comparator.from_dict(d["default_comparator"][name]).describe()
            lines.append(f"  output {name}: {doc}; default comparator {comparator}")
        for role in ("kernels", "oracles"):
            default = d["default_" + role[:-1]]
            for name, doc in d[role].items():
                mark = " (default)" if name == default else ""
                lines.append(f"  {role[:-1]:6} {name}{mark}: {doc}")
        lines += [f"  seed case (run first): {json.dumps(case, sort_keys=True)}"
                  for case in d.get("examples", [])]
        lines.append("")
    return "\n".join(lines)
