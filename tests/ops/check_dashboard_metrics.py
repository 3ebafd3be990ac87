#!/usr/bin/env python3
"""Check that every metric the Grafana dashboard queries is exported by a running VisionQuery.

  check_dashboard_metrics.py --metrics-url http://127.0.0.1:8000/metrics
  check_dashboard_metrics.py --self-test          # offline: extraction + parser + dashboard JSON
  check_dashboard_metrics.py --list-exprs         # dashboard PromQL, Grafana variables replaced,
                                                  # one JSON string per line (for prometheus_scrape.sh)

Every PromQL expression in monitoring/grafana/dashboards/visionquery.json (panel targets, nested
row panels, templating queries) is reduced to the metric names it selects: string literals, label
matchers, range selectors, grouping clauses (by/without/on/ignoring/group_*), numbers/durations,
functions and keywords are dropped. A name counts as exported when /metrics has a sample line or
a `# TYPE`/`# HELP` line for it; for `X_bucket`/`X_sum`/`X_count` a histogram (or summary for
_sum/_count) `X` also counts, and for `X_total` an OpenMetrics-style counter `X`. A `_bucket`
queried on something that /metrics declares as another type is reported as a type mismatch.

Note: the Prometheus exporter only lists a labelled series after it was first observed, so run
this after the service has handled a few requests (or pre-register the series).
Exit status: 0 when everything is found; the last line is "check_dashboard_metrics: N passed, M failed".
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring/grafana/dashboards/visionquery.json"

# The service's metric contract, read from src/metrics.rs (the one place the service names its
# metrics), so a metric added there without a dashboard panel fails the self-test.
def _read_contract() -> dict:
    import re
    source = (ROOT / "src/metrics.rs").read_text()
    names = dict(re.findall(r'pub const (\w+): &str = "(vq_\w+)";', source))
    kinds = dict((const, kind) for kind, const in re.findall(r"describe_(counter|gauge|histogram)!\((\w+)", source))
    contract = {names[const]: kinds.get(const, "untyped") for const in names}
    if len(contract) < 10:
        raise SystemExit(f"could not read the metric contract from src/metrics.rs (found {contract})")
    return contract


CONTRACT = _read_contract()

GRAFANA_VARS = {
    "__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "5m",
    "__range_s": "300", "__range_ms": "300000", "__auto_interval": "15s",
}

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "start", "end",
}
HIST_SUFFIXES = ("_bucket", "_sum", "_count")

TOKEN = re.compile(r"""
    (?P<num>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<other>.)
""", re.X | re.S)


def substitute_grafana_vars(expr: str) -> str:
    def rep(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        name = name.split(":")[0]
        return GRAFANA_VARS.get(name, ".*")
    return re.sub(r"\$\{([^}]+)\}|\$([A-Za-z_][A-Za-z0-9_]*)", rep, expr)


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names selected by one PromQL expression."""
    names: set[str] = set()
    expr = substitute_grafana_vars(expr)
    # {__name__="x"} / {__name__=~"a|b"} selectors (plain alternations only)
    for op, val in re.findall(r'__name__\s*(=~|=)\s*"([^"]*)"', expr):
        if op == "=" or re.fullmatch(r"[A-Za-z0-9_:|]+", val):
            names.update(v for v in val.split("|") if v)
    # label_values(selector, label) -> only the selector part
    expr = re.sub(r"label_values\s*\(\s*([^,()]*(?:\{[^}]*\})?)\s*(?:,[^)]*)?\)", r"(\1)", expr)
    expr = re.sub(r"\b(?:label_names|metrics|query_result)\s*\(\s*\)", "", expr)
    expr = strip_strings(expr)
    expr = re.sub(r"\{[^{}]*\}", " ", expr)                      # label matchers
    expr = re.sub(r"\[[^\[\]]*\]", " ", expr)                    # ranges / subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", expr)
    toks = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr)]
    for k, (kind, text) in enumerate(toks):
        if kind != "ident" or text.lower() in KEYWORDS:
            continue
        nxt = next((t for kk, t in toks[k + 1:] if not t.isspace()), "")
        if nxt == "(":                                             # function / aggregation
            continue
        names.add(text)
    return names


def iter_exprs(dash: dict):
    """(where, expr) for every PromQL query in a dashboard."""
    def panels(ps):
        for p in ps or []:
            yield p
            yield from panels(p.get("panels"))
    for p in panels(dash.get("panels")):
        for t in p.get("targets", []) or []:
            if isinstance(t.get("expr"), str) and t["expr"].strip():
                yield f"panel {p.get('id')} '{p.get('title')}' ref {t.get('refId')}", t["expr"]
    for v in dash.get("templating", {}).get("list", []) or []:
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if isinstance(q, str) and q.strip():
                yield f"variable '{v.get('name')}'", q


def dashboard_metrics(dash: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for where, e in iter_exprs(dash):
        for n in metric_names(e):
            out.setdefault(n, []).append(where)
    return out


def base_name(n: str) -> str:
    for s in HIST_SUFFIXES:
        if n.endswith(s):
            return n[: -len(s)]
    return n


# ---------------------------------------------------------------------------------------------
# /metrics

def parse_exposition(text: str) -> tuple[dict[str, str], set[str]]:
    types: dict[str, str] = {}
    declared: set[str] = set()
    samples: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP", "UNIT"):
                declared.add(parts[2])
                if parts[1] == "TYPE" and len(parts) >= 4:
                    types[parts[2]] = parts[3].strip()
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if m:
            samples.add(m.group())
    for d in declared:
        types.setdefault(d, "untyped")
    return types, samples


def lookup(name: str, types: dict[str, str], samples: set[str]) -> tuple[bool, str]:
    """(found, how/why)."""
    if name.endswith("_bucket"):
        b = name[: -len("_bucket")]
        if b in types and types[b] not in ("histogram", "gaugehistogram", "untyped"):
            return False, f"queried as a histogram but /metrics declares {b} as {types[b]}"
    if name in samples:
        return True, "sample"
    if name in types:
        return True, f"# TYPE {types[name]} (no samples yet)"
    b = base_name(name)
    if b != name and b in types:
        t = types[b]
        okt = {"histogram", "gaugehistogram"} if name.endswith("_bucket") else {"histogram", "gaugehistogram", "summary"}
        if t in okt:
            return True, f"{t} {b}" + ("" if name in samples else " (no samples yet)")
        return False, f"{name} needs a histogram/summary but {b} is a {t}"
    if name.endswith("_total") and types.get(name[: -len("_total")]) == "counter":
        return True, f"OpenMetrics counter {name[:-6]}"
    return False, "not in /metrics"


def fetch(url: str, wait: float) -> str:
    deadline = time.monotonic() + wait
    last: Exception | None = None
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            last = e
            if time.monotonic() >= deadline:
                raise SystemExit(f"FAIL cannot fetch {url}: {last}\ncheck_dashboard_metrics: 0 passed, 1 failed")
            time.sleep(1)


# ---------------------------------------------------------------------------------------------

class Counter:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, cond: bool, msg: str, detail: str = "") -> bool:
        if cond:
            self.passed += 1
            print(f"PASS {msg}")
        else:
            self.failed += 1
            print(f"FAIL {msg}" + (f"\n     {detail}" if detail else ""))
        return cond

    def finish(self) -> int:
        print(f"check_dashboard_metrics: {self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1


def run_check(dash: dict, text: str, c: Counter, require_samples: bool, quiet_where: bool = False) -> None:
    types, samples = parse_exposition(text)
    used = dashboard_metrics(dash)
    c.check(bool(used), f"dashboard queries {len(used)} metric names")
    for name in sorted(used):
        found, how = lookup(name, types, samples)
        if found and require_samples and "no samples" in how:
            found, how = False, how + " and --require-samples is set"
        where = "" if quiet_where else f"\n     used by: {'; '.join(sorted(set(used[name]))[:3])}"
        c.check(found, f"{name}: {how}", "" if found else where.lstrip("\n").strip())
    unused = sorted(set(CONTRACT) - {base_name(n) for n in used} - {n for n in used})
    if unused:
        print(f"NOTE contract metrics no dashboard panel uses: {', '.join(unused)}")
    extra = sorted(n for n in types if n.startswith("vq_") and n not in CONTRACT)
    if extra:
        print(f"NOTE vq_ metrics exported but not in the contract: {', '.join(extra)}")


def self_test(dash: dict) -> int:
    c = Counter()
    cases = {
        'sum by (route, method) (rate(vq_http_requests_total{status=~"5..", route!="/metrics"}[$__rate_interval]))':
            {"vq_http_requests_total"},
        'histogram_quantile(0.95, sum by (le, route) (rate(vq_http_request_duration_seconds_bucket[5m])))':
            {"vq_http_request_duration_seconds_bucket"},
        '(sum(rate(a_total{x="y"}[1m])) or vector(0)) / sum(rate(b_total[1m])) > bool 1e-9':
            {"a_total", "b_total"},
        'sum(rate(x_sum[5m] offset 1h)) by (modality) / on(modality) group_left(foo) sum(rate(x_count[5m])) by (modality)':
            {"x_sum", "x_count"},
        'max by (state) (vq_model_state) == 1': {"vq_model_state"},
        '{__name__="vq_index_images", job="visionquery"}': {"vq_index_images"},
        'rate(foo:bar_total[${__rate_interval}]) * 60 + time()': {"foo:bar_total"},
        'max_over_time(up{job="visionquery"}[5m:30s]) unless absent(nan_metric)': {"up", "nan_metric"},
        'label_values(vq_http_requests_total{job="visionquery"}, route)': {"vq_http_requests_total"},
        'clamp_min(sum(vq_embed_queue_depth), 0) and on() vq_model_loaded == 1': {"vq_embed_queue_depth", "vq_model_loaded"},
    }
    for expr, want in cases.items():
        got = metric_names(expr)
        c.check(got == want, f"extract {expr[:70]!r}", f"got {sorted(got)}, want {sorted(want)}")

    # The dashboard covers the whole contract, and queries nothing outside it.
    used = dashboard_metrics(dash)
    bases = {base_name(n) for n in used}
    c.check(set(CONTRACT) <= bases, "dashboard covers every contract metric",
            f"not used: {sorted(set(CONTRACT) - bases)}")
    c.check(bases <= set(CONTRACT), "dashboard queries only contract metrics",
            f"unknown: {sorted(bases - set(CONTRACT))}")
    for n in used:
        b = base_name(n)
        if b != n:
            c.check(CONTRACT.get(b) == "histogram", f"{n} is a suffix of contract histogram {b}")

    # Dashboard JSON: Prometheus uid everywhere, unique ids, sane grid, schema version.
    ids, bad_ds = [], []
    def walk(ps):
        for p in ps or []:
            yield p
            yield from walk(p.get("panels"))
    for p in walk(dash.get("panels")):
        ids.append(p.get("id"))
        if p.get("type") == "row":
            continue
        for obj in [p] + list(p.get("targets", [])):
            ds = obj.get("datasource")
            if not (isinstance(ds, dict) and ds.get("uid") == "prometheus" and ds.get("type") == "prometheus"):
                bad_ds.append(f"{p.get('title')}: {ds}")
        g = p.get("gridPos", {})
        c.check(all(isinstance(g.get(k), int) for k in "xywh") and g["x"] + g["w"] <= 24,
                f"panel '{p.get('title')}' has a valid gridPos")
    c.check(not bad_ds, "every panel and target uses datasource uid 'prometheus'", "; ".join(bad_ds))
    c.check(len(ids) == len(set(ids)) and None not in ids, "panel ids are unique")
    c.check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
            f"schemaVersion {dash.get('schemaVersion')}")
    c.check(bool(dash.get("uid")) and bool(dash.get("title")), f"dashboard uid '{dash.get('uid')}'")

    # The /metrics parser and lookup, on a crafted exposition with one metric missing.
    crafted = "\n".join(
        [f"# TYPE {n} {t}" for n, t in CONTRACT.items() if n != "vq_build_info"]
        + ['vq_http_requests_total{route="/search",method="POST",status="200"} 3',
           'vq_http_request_duration_seconds_bucket{route="/search",le="0.1"} 1',
           "vq_model_loaded 1", ""])
    types, samples = parse_exposition(crafted)
    c.check(lookup("vq_http_request_duration_seconds_bucket", types, samples)[0], "lookup: histogram bucket sample found")
    c.check(lookup("vq_embed_duration_seconds_sum", types, samples)[0], "lookup: histogram _sum via # TYPE")
    c.check(not lookup("vq_build_info", types, samples)[0], "lookup: missing metric reported missing")
    c.check(not lookup("vq_index_images_bucket", types, samples)[0], "lookup: _bucket on a gauge is a mismatch")
    c.check(lookup("x_total", {"x": "counter"}, set())[0], "lookup: OpenMetrics counter without _total")
    sub = Counter()
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        run_check(dash, crafted, sub, require_samples=False, quiet_where=True)
    c.check(sub.failed == 1 and "FAIL vq_build_info" in buf.getvalue(),
            "full check on crafted /metrics flags exactly the missing vq_build_info",
            buf.getvalue().replace("\n", "\n     "))
    return c.finish()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics-url", help="the service's /metrics URL")
    ap.add_argument("--dashboard", default=str(DASHBOARD))
    ap.add_argument("--wait", type=float, default=30, help="seconds to retry fetching /metrics (default 30)")
    ap.add_argument("--require-samples", action="store_true",
                    help="a # TYPE line alone is not enough: each metric needs a sample")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--list-exprs", action="store_true")
    a = ap.parse_args()
    dash = json.loads(Path(a.dashboard).read_text())

    if a.list_exprs:
        for _, e in iter_exprs(dash):
            print(json.dumps(substitute_grafana_vars(e)))
        return 0
    if a.self_test:
        return self_test(dash)
    if not a.metrics_url:
        ap.error("--metrics-url (or --self-test / --list-exprs) is required")
    c = Counter()
    run_check(dash, fetch(a.metrics_url, a.wait), c, a.require_samples)
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
