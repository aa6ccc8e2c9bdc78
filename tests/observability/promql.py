"""Just enough PromQL reading to list the metric names an expression uses."""

from __future__ import annotations

import re

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = re.findall(r"(?<![\w$])[A-Za-z_:][A-Za-z0-9_:]*\b(?!\s*\()", s)
    return {n for n in names if n.lower() not in KEYWORDS}


def grafana_exprs(dashboard: dict[str, object]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query in a Grafana dashboard, plus its variables' queries."""
    out: list[tuple[str, str]] = []
    panels = list(dashboard.get("panels", []))  # type: ignore[call-overload]
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for var in dashboard.get("templating", {}).get("list", []):  # type: ignore[union-attr]
        if var.get("type") == "query":
            out.append((f"variable {var['name']}", var["definition"]))
    return out


def as_query(expr: str) -> str:
    """Grafana's variables replaced so that Prometheus can run the expression."""
    m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr.strip())
    if m:  # Grafana's own function: ask for the series that it would read the label from
        return f"count by ({m.group(2)}) ({m.group(1)})"
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            .replace("$__range", "5m").replace("$sweep", ".*"))
