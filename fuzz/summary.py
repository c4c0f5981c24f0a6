"""What `kfuzz` prints: tables, the progress line, a run's summary and its JSON document."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfuzz.findings import Finding
    from kfuzz.runner import RunReport

METRIC_KEYS = ("mismatches", "numel", "mismatch_ratio", "max_abs", "max_abs_index", "max_rel",
               "worst_index", "rel_l2", "cosine", "nonfinite_actual", "max_ulp",
               "worst_over_allowed")


def short(key: str) -> str:
    """A fingerprint's short id."""
    return key[:12]


def ratio(value: Any) -> str:
    """A ratio as a percentage, "-" for None."""
    return "-" if value is None else f"{100 * float(value):.4g}%"


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns under `headers`."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


class Progress:
    """One self-overwriting status line on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
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
        sys.stderr.write("\r\033[K" + "  ".join(parts))
        sys.stderr.flush()

    def done(self, *_: Any) -> None:
        """Clear the line."""
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def finding_summary(finding: Finding) -> dict[str, Any]:
    """A finding as `kfuzz run --json` prints it."""
    outputs = finding.outcome.outputs
    return {
        "id": short(finding.fingerprint),
        "fingerprint": finding.fingerprint,
        "target": finding.target,
        "kernel": finding.kernel,
        "oracle": finding.oracle,
        "kind": finding.kind,
        "failure": finding.failure,
        "case": finding.case,
        "comparator": {name: m.get("comparator") for name, m in outputs.items()},
        "metrics": {name: {k: m.get(k) for k in METRIC_KEYS} for name, m in outputs.items()},
        "error": finding.outcome.error,
        "shrink": finding.shrink or None,
    }


def run_document(report: RunReport) -> dict[str, Any]:
    """The `kfuzz run --json` document."""
    return {
        "run": report.run_id, "db": report.db,
        "campaigns": [r for r in report.results() if "skipped" not in r],
        "skipped": [{"target": t, "reason": why} for t, why in report.skipped],
        "findings": [finding_summary(f) for f in report.findings],
    }


def run_text(report: RunReport) -> str:
    """The `kfuzz run` summary: campaigns, skipped targets, findings."""
    from kfuzz import targets as registry

    rows = []
    for r in report.campaigns:
        rate = f"{r.examples / r.seconds:.0f}/s" if r.seconds else "-"
        rows.append([r.target, r.kernel, r.oracle, str(r.examples), rate,
                     str(len(r.findings)), f"{r.seconds:.1f}s", str(r.seed)])
    parts = [table(rows, ["target", "kernel", "oracle", "examples", "rate", "findings", "time",
                          "seed"])]
    closest = [run.closest for run in report.runs if run.result is not None and run.closest]
    if closest:
        parts.append(table([_closest_row(c) for c in closest],
                           ["closest call", "output", "worst/allowed", "ratio", "max ulp",
                            "rel-L2", "case"]))
    if report.skipped:
        parts.append("skipped (cannot run here):\n" + "\n".join(
            f"  {target}: {why}" for target, why in report.skipped))
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
        rows.append([short(f.fingerprint), f.kind, f.failure, f.target,
                     ratio(f.outcome.worst_ratio()), str(size or "-"), shrink])
    parts.append(table(rows, ["id", "kind", "failure", "target", "ratio", "size", "shrink"]))
    if report.db is not None:
        parts.append(f"stored in {report.db}; `kfuzz corpus show ID` for details, "
                     "`kfuzz replay` to rerun")
    return "\n\n".join(parts)


def _closest_row(c: Any) -> list[str]:
    """One line of headroom: how near the campaign's closest case came to failing."""
    m = c.metrics

    def number(key: str, spec: str) -> str:
        value = m.get(key)
        try:
            return format(float(value), spec)
        except (TypeError, ValueError):
            return "-" if value is None else str(value)

    case = json.dumps(c.case, sort_keys=True)
    return [c.target, c.output, number("worst_over_allowed", ".3g"),
            ratio(float(m.get("mismatch_ratio") or 0.0)), number("max_ulp", ".0f"),
            number("rel_l2", ".3g"), case if len(case) <= 80 else case[:77] + "..."]


def targets_text(described: list[dict[str, Any]]) -> str:
    """`kfuzz targets`: each target's signature, inputs, outputs, kernels and oracles."""
    from kfuzz.comparator import Comparator

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
        lines.append("")
    return "\n".join(lines)
