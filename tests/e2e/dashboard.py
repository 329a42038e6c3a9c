"""The Grafana dashboard (monitoring/grafana/dchat.json) as the tests see
it: its panels, nested rows included; every PromQL expression in it
(panel targets and templating queries); the metric names an expression
reads; and the names a /metrics page exports. test_dashboard.py checks
the names against live processes, test_prometheus.py runs the
expressions in a real Prometheus."""

import json
import os
import re

from cluster import REPO

DASHBOARD = os.path.join(REPO, "monitoring", "grafana", "dchat.json")

# Grafana's built-in variables and the dashboard's own, with a value that
# makes an expression Prometheus can run (the test's scrape interval is 1s).
GRAFANA_VARS = {
    "__rate_interval": "5s",
    "__interval": "2s",
    "__range": "1m",
    "instance": ".*",
}

# PromQL words that are not metric names: keywords, and the functions
# and aggregations, which are also recognised by the "(" that follows.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
            "bool", "and", "or", "unless", "inf", "nan", "atan2"}
# Clauses whose parenthesised list holds label names, not expressions.
LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER = re.compile(r"(?<![a-zA-Z0-9_:])(0x[0-9a-fA-F]+|\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+)")


def load():
    with open(DASHBOARD) as f:
        return json.load(f)


def panels(dash):
    """Every panel, rows included, with the panels a collapsed row holds."""
    out = []

    def walk(items):
        for p in items:
            out.append(p)
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    return out


def expressions(dash):
    """[(where, expr)]: every target's expr, and every templating variable's
    query (a Prometheus query variable's is a string or {"query": ...})."""
    out = []
    for p in panels(dash):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}",
                            t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if q:
            out.append((f"variable {v.get('name')}", q))
        if v.get("definition"):
            out.append((f"variable {v.get('name')} definition", v["definition"]))
    return out


def substitute(expr, values=None):
    """expr with the Grafana variables replaced ($x, ${x}, [[x]]): by
    values, else by GRAFANA_VARS."""
    table = dict(GRAFANA_VARS, **(values or {}))

    def value(m):
        name = m.group(1) or m.group(2) or m.group(3)
        assert name in table, f"unknown Grafana variable {name} in {expr!r}"
        return table[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def metric_names(expr):
    """The metric names a PromQL expression (or a Grafana query variable:
    label_values(metric, label), query_result(expr)) reads."""
    e = expr.strip()
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\s*\)", e, re.S)
    if m:
        e = m.group(1)
    elif re.fullmatch(r"label_values\(\s*\w+\s*\)", e):
        return set()   # a label's values over all series: no metric
    else:
        m = re.fullmatch(r"query_result\((.*)\)", e, re.S)
        if m:
            e = m.group(1)
    e = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|`[^`]*`', " ", e)   # strings
    e = re.sub(r"\{[^{}]*\}", " ", e)                                   # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)                                 # ranges, subqueries
    e = re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]", " ", e)         # Grafana variables
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)                       # offset 5m
    e = re.sub(r"@\s*(start\(\)|end\(\)|[0-9.]+)", " ", e)              # @ modifiers
    e = LABEL_LIST.sub(" ", e)                                          # by (le), on (x)
    e = NUMBER.sub(" ", e)
    names = set()
    for m in IDENT.finditer(e):
        word = m.group(0)
        if word.lower() in KEYWORDS:
            continue
        if re.match(r"\s*\(", e[m.end():]):
            continue   # a function or an aggregation
        names.add(word)
    return names


def exported_names(text):
    """The series names a /metrics page offers to queries: every sample's
    name, and every announced family's (a histogram x: x_bucket, x_sum,
    x_count; a summary x: x, x_sum, x_count), samples or not yet."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(None, 3)
            if kind == "histogram":
                names |= {family + "_bucket", family + "_sum", family + "_count"}
            elif kind == "summary":
                names |= {family, family + "_sum", family + "_count"}
            else:
                names.add(family)
        elif line and not line.startswith("#"):
            names.add(IDENT.match(line).group(0))
    return names
