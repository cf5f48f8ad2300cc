"""The call path's Prometheus series (plain-int counters: see :mod:`ringback.metrics`)."""

from __future__ import annotations

from ringback.metrics import Registry


class SipMetrics:
    def __init__(self, registry: Registry) -> None:
        self.requests = registry.counter(
            "ringback_sip_requests_total", "SIP requests received, by method", ("method",)
        )
        self.responses = registry.counter(
            "ringback_sip_responses_total",
            "SIP responses sent (first send), by status code",
            ("code",),
        )
        self.decisions = registry.counter(
            "ringback_sip_decisions_total", "INVITE decisions, by outcome", ("outcome",)
        )
        self.parse_errors = registry.counter(
            "ringback_sip_parse_errors_total",
            "Malformed SIP messages, by whether they could be answered",
            ("answered",),
        )
        self.untrusted = registry.counter(
            "ringback_sip_untrusted_dropped_total",
            "Requests from sources outside sip.trusted_sources, dropped silently",
        )
        self.decision_latency = registry.histogram(
            "ringback_sip_decision_seconds",
            "Time from an INVITE's arrival to its decision being sent (UDP: from the read "
            "of the batch it came in to the batch's answers handed to the kernel)",
            (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
        )
        self.udp_turnaround = registry.histogram(
            "ringback_sip_udp_turnaround_seconds",
            "UDP: from the kernel's receipt of the first datagram of a batch read together "
            "to the batch's answers handed to the kernel, counted once per datagram of the "
            "batch (the first waited longest: an upper bound for the others). Includes the "
            "time queued in the socket, which the decision time does not; only while "
            "sip.max_receive_age_ms is on (it reads the kernel's receive timestamps)",
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
        )
        self.rate_limited = registry.counter(
            "ringback_sip_rate_limited_total",
            "Requests over their source's sip.rate_limit_per_source, by method and action "
            "(redirected: an INVITE answered 302 at once, unwarned; dropped: anything else)",
            ("method", "action"),
        )
        self.shed = registry.counter(
            "ringback_sip_shed_total",
            "INVITEs shed unread under overload: they waited in the UDP receive queue longer "
            "than sip.max_receive_age_ms (the switch routes such calls on by itself)",
        )
        self.send_dropped = registry.counter(
            "ringback_sip_send_dropped_total",
            "UDP datagrams not sent because the socket's send buffer was full",
        )
        self.connections = registry.counter(
            "ringback_sip_connections_total",
            "SIP stream connections accepted (TLS: after a successful handshake), by transport",
            ("transport",),
        )
        self.ack_timeouts = registry.counter(
            "ringback_sip_ack_timeouts_total", "Final responses never ACKed (Timer H)"
        )
        self.b2bua = registry.counter(
            "ringback_b2bua_calls_total",
            "Ringback-mode calls, by how they went (answered, callee_486, caller_cancelled, ...)",
            ("outcome",),
        )
