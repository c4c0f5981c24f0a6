"""How a chain finding's attribution to its stages is shown (`kfuzz.chains.attribution`): the
verdict line, then one line per stage with its share of the output error as a bar, its local
error and its swap tests. `corpus show`, `kfuzz run`, the report, `kfuzz.check` and the pytest
plugin all write these lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BAR = 20


def bar(share: float, width: int = BAR) -> str:
    """A share in [0, 1] as a bar of `width` characters ("#" filled, "." empty)."""
    filled = max(0, min(width, round(float(share) * width)))
    return "#" * filled + "." * (width - filled)


def stage_line(name: str, stage: Mapping[str, Any], width: int) -> str:
    """One stage: share bar, share, kernel vs golden, local error, swap tests."""
    local = stage.get("local")
    if local is None:
        own = "not run on the golden chain"
    else:
        own = (f"local {'pass' if local['passed'] else 'FAIL'} "
               f"{float(local['mismatch_ratio']):.2%} mismatched, worst "
               f"{float(local['worst_over_allowed']):.3g}x allowed, "
               f"{float(local['max_ulp']):.0f} ULP")
    swaps = (f"golden here {'fixes' if stage['fixes'] else 'does not fix'} the output; "
             f"kernel alone {'fails' if stage['alone_fails'] else 'passes'}")
    return (f"  {name:{width}} {bar(stage['share'])} {float(stage['share']):4.0%}  "
            f"{stage['kernel']} vs {stage['golden']}: {own}; {swaps}")


def attribution_lines(attribution: Mapping[str, Any] | None) -> list[str]:
    """The attribution as text lines: "attribution: <summary>", then one line per stage."""
    if not attribution:
        return []
    stages = attribution.get("stages") or {}
    width = max((len(n) for n in stages), default=0)
    return ([f"attribution: {attribution.get('summary', '')}"]
            + [stage_line(n, s, width) for n, s in stages.items()])


def attribution_html(attribution: Mapping[str, Any] | None) -> str:
    """The attribution as HTML for the report: the verdict, then a bar chart of each stage's
    share of the output error (one row per stage, its local error and swap tests beside it)."""
    import html

    if not attribution:
        return ""
    esc = html.escape
    rows = []
    for name, stage in (attribution.get("stages") or {}).items():
        share = max(0.0, min(1.0, float(stage.get("share", 0.0))))
        detail = stage_line(name, stage, 0).split(":", 1)[-1].strip()
        rows.append(
            f"<tr><td>{esc(name)}</td><td style=\"width:12em\"><div style=\"background:#c0392b;"
            f"height:0.9em;width:{share * 100:.0f}%\"></div></td><td>{share:.0%}</td>"
            f"<td>{esc(str(stage.get('kernel')))} vs {esc(str(stage.get('golden')))}: "
            f"{esc(detail)}</td></tr>")
    return (f"<p><b>attribution:</b> {esc(str(attribution.get('summary', '')))}</p>"
            "<table><tr><th>stage</th><th>share of the output error</th><th></th>"
            "<th>local error and swap tests</th></tr>" + "".join(rows) + "</table>")
