"""The Prometheus exposition: counters bumped through `inc` and through hot-path cells."""

from __future__ import annotations

from ringback.metrics import Registry


def test_a_counter_adds_its_cells_to_what_inc_counted() -> None:
    registry = Registry()
    requests = registry.counter("x_requests_total", "Requests", ("method",))
    invites = requests.cell("INVITE")
    assert requests.cell("INVITE") is invites  # one cell per label set
    invites[0] += 3
    requests.inc("INVITE")
    requests.inc("BYE", by=2)
    requests.cell("ACK")  # made, never bumped: a zero series
    assert requests.get("INVITE") == 4
    assert requests.get("BYE") == 2
    assert requests.get("OPTIONS") == 0
    assert requests.total() == 6  # the worker counters' sum (server.py)
    text = registry.render()
    assert 'x_requests_total{method="INVITE"} 4\n' in text
    assert 'x_requests_total{method="BYE"} 2\n' in text
    assert 'x_requests_total{method="ACK"} 0\n' in text


def test_an_unlabelled_counter_reads_zero_until_bumped() -> None:
    registry = Registry()
    shed = registry.counter("x_shed_total", "Shed")
    assert "x_shed_total 0\n" in registry.render()
    shed.cell()[0] += 1
    assert "x_shed_total 1\n" in registry.render()
