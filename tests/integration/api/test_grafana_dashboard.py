"""config/grafana/ringback.json covers what /metrics exposes, and names nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

from court_api_support import Api

DASHBOARD = Path(__file__).resolve().parents[3] / "config" / "grafana" / "ringback.json"
# Series only `ringback serve` has (its loop watch, loop_watch.py), not a Service in a test.
SERVE_ONLY = {
    "ringback_gc_pause_seconds",
    "ringback_loop_lag_seconds",
    "ringback_loop_cpu_wait_seconds",
}


def _exprs(panels: list[dict]) -> list[str]:  # type: ignore[type-arg]
    out = []
    for panel in panels:
        out += [t["expr"] for t in panel.get("targets", [])]
        out += _exprs(panel.get("panels", []))
    return out


async def test_the_dashboard_shows_every_metric_and_only_real_ones(api: Api) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard["panels"])
    assert len(exprs) >= 20
    shown = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for e in exprs
        for name in re.findall(r"\bringback_[a-z_]+", e)
    }
    text = (await api.get("/metrics")).raw.decode()
    exposed = set(re.findall(r"^# TYPE (ringback_[a-z_]+) ", text, re.M))
    assert len(exposed) >= 20
    missing = exposed - shown
    assert not missing, f"add panels to {DASHBOARD.name} for: {sorted(missing)}"
    unknown = shown - exposed - SERVE_ONLY
    assert not unknown, f"{DASHBOARD.name} names metrics /metrics does not have: {sorted(unknown)}"
    # every panel queries through the chosen data source and node
    for e in exprs:
        assert "$instance" in e, e
