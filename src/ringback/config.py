"""Configuration: a TOML file, then `RINGBACK_<SECTION>_<KEY>` environment overrides.

Every key has a default here and is documented in `config/ringback.toml`. A bad value is
refused with a `ConfigError` naming the key, so `ringback serve` can print one line and exit.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringback.registry.announcement_days import MIN_RETENTION_DAYS
from ringback.registry.import_csv import ImportOptions
from ringback.registry.numbers import NumberingPlan


class ConfigError(ValueError):
    """A configuration key has a bad value; the message names the key."""


@dataclass
class DatabaseConfig:
    url: str = ""  # empty: run the embedded PostgreSQL in `data_dir`
    owner_url: str = ""  # migrations run as this role (empty: url)
    data_dir: str = "ringback-data"
    pool_max: int = 10
    connect_timeout_s: float = 5.0
    write_url: str = ""  # empty: writes go to `url` (set it when `url` is a hot standby)


@dataclass
class SipConfig:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 5060
    trusted_sources: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    loop_marker: str = "rbk"
    t1_ms: int = 500
    t2_ms: int = 4000
    t4_ms: int = 5000
    tcp_idle_s: float = 120.0
    max_message_bytes: int = 65535
    # SIP over TLS (RFC 3261 §26): on when tls_cert and tls_key are set
    tls_port: int = 5061
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # set: peers must present a certificate signed by this CA
    # per-source request limit (token bucket per source IP); 0: off
    rate_limit_per_source: float = 0.0
    rate_limit_burst: float = 0.0  # 0: one second's worth of rate_limit_per_source
    # UDP overload shedding: a datagram that waited longer than this in the socket is dropped
    max_receive_age_ms: float = 200.0  # 0: off


@dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    check_answers: bool = False  # hold every answer to /openapi.json (tests)
    tls_cert: str = ""  # PEM certificate chain; with tls_key: serve HTTPS directly
    tls_key: str = ""
    trusted_proxies: list[str] = field(default_factory=list)  # CIDRs whose X-Forwarded-Proto counts
    head_timeout_s: float = 10.0  # a request's line and headers must arrive within this
    body_timeout_s: float = 30.0  # a body must arrive within this ...
    body_min_rate: float = 1000.0  # ... plus one second per this many bytes received
    rate_limit_per_token: float = 0.0  # requests/s per API token (token bucket); 0: off
    rate_limit_burst: float = 0.0  # 0: one second's worth of rate_limit_per_token


@dataclass
class NumberingConfig:
    country_code: str = "86"
    trunk_prefix: str = "0"
    international_prefix: str = "00"
    national_max_digits: int = 11

    def plan(self) -> NumberingPlan:
        return NumberingPlan(
            self.country_code,
            self.trunk_prefix,
            self.international_prefix,
            self.national_max_digits,
        )


@dataclass
class IndexConfig:
    heartbeat_s: float = 1.0
    compact_threshold: int = 50_000
    ready_max_staleness_s: float = 30.0
    max_warn_staleness_s: float = 600.0
    feed_retention_days: int = 7
    feed: str = "auto"  # auto: LISTEN, polling where refused; poll: always poll
    poll_interval_s: float = 0.25
    snapshot: bool = True  # share the index through <cache.dir>/index.snapshot


@dataclass
class AnnouncementConfig:
    repeat: int = 1
    gap_ms: int = 500
    max_concurrent: int = 1000
    media_ip: str = ""  # empty: the SIP listen addresses
    rtp_port_min: int = 20000
    rtp_port_max: int = 29999
    store_caller: bool = False
    allowed_destinations: list[str] = field(default_factory=list)  # empty: sip.trusted_sources
    test_numbers: list[str] = field(default_factory=list)  # "+E164" or "+E164:recording_id"
    precondition_timeout_s: float = 10.0  # RFC 3312: wait for the caller's UPDATE, then 302


@dataclass
class AnnouncementsConfig:
    """Proof of play kept in the `announcements` table (partitioned by UTC day)."""

    retention_days: int = 400  # days of raw proof-of-play rows kept; 0: for ever
    partitions_ahead_days: int = 7  # day partitions made this many days ahead


@dataclass
class ListingsConfig:
    max_duration_days: int = 365
    notice_period_days: float = 3.0


@dataclass
class RecordingsConfig:
    max_bytes: int = 20 * 1024 * 1024
    max_duration_s: float = 60.0
    min_duration_s: float = 0.5
    decode_timeout_s: float = 20.0
    max_concurrent_decodes: int = 4
    target_lufs: float = -19.0
    peak_dbfs: float = -1.0
    silence_dbfs: float = -50.0


@dataclass
class ImportsConfig:
    max_bytes: int = 2 * 1024 * 1024 * 1024  # a national list, 15 M rows, is about 0.9 GB
    batch_rows: int = 20_000
    lease_s: float = 30.0  # a running job renews its lease; one left expired is failed


@dataclass
class CacheConfig:
    dir: str = ""  # empty: <database.data_dir>/cache
    load_timeout_s: float = 5.0  # one recording fetched from the database
    poll_s: float = 10.0  # recordings checked against the database at least this often

    def path(self, data_dir: str) -> Path:
        return Path(self.dir) if self.dir else Path(data_dir) / "cache"


@dataclass
class EventsConfig:
    enabled: bool = True
    poll_interval_s: float = 1.0
    batch_size: int = 100
    concurrency: int = 16
    timeout_s: float = 10.0
    max_attempts: int = 12
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 3600.0
    hourly_delay_s: float = 120.0
    # CIDRs webhooks may reach although internal (loopback, private, link-local, ...)
    allowed_destinations: list[str] = field(default_factory=list)


@dataclass
class AuditConfig:
    checkpoint_interval_s: float = 3600.0  # how often the audit chain's head is exported


@dataclass
class LabConfig:
    enabled: bool = False
    users: list[str] = field(default_factory=list)  # "number:password"
    realm: str = "ringback-lab"
    callee_tone_s: float = 20.0
    answer_after_s: float = 0.0


@dataclass
class RingbackConfig:
    mode: str = "redirect"  # or "ringback"
    next_hop: str = ""  # "IP:port"; empty: where the caller's INVITE came from
    identity_headers: list[str] = field(default_factory=lambda: ["P-Asserted-Identity", "Privacy"])
    answer_after: str = "answer"  # or "first_play"
    max_ring_s: float = 180.0
    max_call_s: float = 7200.0
    callee_timeout_s: float = 4.0
    media: str = "builtin"  # or "rtpengine"
    rtpengine_ng: str = "127.0.0.1:2223"  # rtpengine's ng control port, "IP:port"
    rtpengine_timeout_s: float = 0.5

    def next_hop_address(self) -> tuple[str, int] | None:
        if not self.next_hop or self.next_hop == "self":
            return None
        return _host_port(self.next_hop)

    def rtpengine_address(self) -> tuple[str, int]:
        return _host_port(self.rtpengine_ng)


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class PortalConfig:
    enabled: bool = True
    session_hours: float = 8.0
    idle_minutes: float = 60.0
    language: str = "zh"  # the default: zh (Simplified Chinese) or en
    timezone: str = "Asia/Shanghai"  # dates shown and entered in the portal


@dataclass
class ShutdownConfig:
    drain_s: float = 30.0


@dataclass
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto: readable on a terminal, JSON lines otherwise


@dataclass
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    numbering: NumberingConfig = field(default_factory=NumberingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    announcement: AnnouncementConfig = field(default_factory=AnnouncementConfig)
    announcements: AnnouncementsConfig = field(default_factory=AnnouncementsConfig)
    listings: ListingsConfig = field(default_factory=ListingsConfig)
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)
    imports: ImportsConfig = field(default_factory=ImportsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    lab: LabConfig = field(default_factory=LabConfig)
    ringback: RingbackConfig = field(default_factory=RingbackConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def import_options(self, effective_reason: str | None = None) -> ImportOptions:
        """The rules a bulk import of listings follows (the same as `PUT /v1/listings`)."""
        return ImportOptions(
            plan=self.numbering.plan(),
            max_duration_days=self.listings.max_duration_days,
            notice_period_days=self.listings.notice_period_days,
            effective_reason=effective_reason,
            batch_rows=self.imports.batch_rows,
        )


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (if given), apply environment overrides, validate, return the config."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    config = Config()
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for section_name, values in raw.items():
        if section_name not in sections:
            raise ConfigError(f"{section_name}: unknown section")
        if not isinstance(values, dict):
            raise ConfigError(f"{section_name}: must be a table")
        section = getattr(config, section_name)
        for key, value in values.items():
            _set(section, section_name, key, value, from_env=False)
    for name, value in (os.environ if env is None else env).items():
        if not name.startswith("RINGBACK_"):
            continue
        rest = name[len("RINGBACK_") :].lower()
        section_name, _, key = rest.partition("_")
        if section_name not in sections or not key:
            continue  # other RINGBACK_* variables are not config keys
        _set(getattr(config, section_name), section_name, key, value, from_env=True)
    _validate(config)
    return config


def _set(section: Any, section_name: str, key: str, value: Any, *, from_env: bool) -> None:
    name = f"{section_name}.{key}"
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        raise ConfigError(f"{name}: unknown key")
    hints = typing.get_type_hints(type(section))
    setattr(section, key, _coerce(name, hints[key], value, from_env=from_env))


def _coerce(name: str, kind: Any, value: Any, *, from_env: bool) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        if from_env and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: must be a list of strings, got {value!r}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
            return True
        if from_env and isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name}: must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: must be a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: must be a string, got {value!r}")
    raise ConfigError(f"{name}: unsupported type {kind!r}")  # pragma: no cover


def _port(name: str, value: int, *, allow_zero: bool = True) -> None:
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise ConfigError(f"{name}: must be a port number {low}-65535, got {value}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: must be greater than 0, got {value}")


def _validate(c: Config) -> None:
    _port("sip.port", c.sip.port)
    _port("http.port", c.http.port)
    if bool(c.http.tls_cert) != bool(c.http.tls_key):
        raise ConfigError("http.tls_cert: tls_cert and tls_key must be set together")
    for key in ("tls_cert", "tls_key"):
        value = getattr(c.http, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"http.{key}: no such file: {value!r}")
    _port("sip.tls_port", c.sip.tls_port)
    if bool(c.sip.tls_cert) != bool(c.sip.tls_key):
        raise ConfigError("sip.tls_cert: tls_cert and tls_key must be set together")
    if c.sip.tls_client_ca and not c.sip.tls_cert:
        raise ConfigError("sip.tls_client_ca: needs sip.tls_cert and sip.tls_key")
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        value = getattr(c.sip, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"sip.{key}: no such file: {value!r}")
    if c.sip.tls_cert and c.sip.tls_port == c.sip.port and c.sip.port != 0:
        raise ConfigError("sip.tls_port: must differ from sip.port (TCP is served there)")
    for section, key in (
        ("sip", "rate_limit_per_source"),
        ("sip", "rate_limit_burst"),
        ("sip", "max_receive_age_ms"),
        ("http", "rate_limit_per_token"),
        ("http", "rate_limit_burst"),
    ):
        if getattr(getattr(c, section), key) < 0:
            raise ConfigError(f"{section}.{key}: must be >= 0 (0: off / default)")
    for cidr in c.http.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"http.trusted_proxies: {cidr!r} is not a CIDR network") from None
    for key in ("head_timeout_s", "body_timeout_s", "body_min_rate"):
        _positive(f"http.{key}", getattr(c.http, key))
    _positive("portal.session_hours", c.portal.session_hours)
    _positive("portal.idle_minutes", c.portal.idle_minutes)
    if c.portal.language not in ("zh", "en"):
        raise ConfigError(f"portal.language: must be zh or en, got {c.portal.language!r}")
    try:
        zoneinfo.ZoneInfo(c.portal.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"portal.timezone: not a time zone name (e.g. Asia/Shanghai): {c.portal.timezone!r}"
        ) from None
    for address in c.sip.listen:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"sip.listen: {address!r} is not an IP address") from None
    for key, cidrs in (
        ("sip.trusted_sources", c.sip.trusted_sources),
        ("announcement.allowed_destinations", c.announcement.allowed_destinations),
        ("events.allowed_destinations", c.events.allowed_destinations),
    ):
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(f"{key}: {cidr!r} is not a CIDR network") from None
    if not c.sip.loop_marker.replace("-", "").isalnum():
        raise ConfigError(
            f"sip.loop_marker: must be a URI parameter name, got {c.sip.loop_marker!r}"
        )
    for key in ("t1_ms", "t2_ms", "t4_ms", "tcp_idle_s", "max_message_bytes"):
        _positive(f"sip.{key}", getattr(c.sip, key))
    if c.sip.t2_ms < c.sip.t1_ms:
        raise ConfigError(
            f"sip.t2_ms: must be at least sip.t1_ms ({c.sip.t1_ms}), got {c.sip.t2_ms}"
        )
    if c.database.url and not c.database.url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("database.url: must start with postgresql:// (or be empty for embedded)")
    owner = c.database.owner_url
    if owner and not owner.startswith(("postgres://", "postgresql://")):
        raise ConfigError("database.owner_url: must start with postgresql:// (or be empty)")
    if owner and not c.database.url:
        raise ConfigError("database.owner_url: only with database.url (embedded sets up both)")
    _positive("audit.checkpoint_interval_s", c.audit.checkpoint_interval_s)
    if not c.database.url and not c.database.data_dir:
        raise ConfigError("database.data_dir: must be set when database.url is empty")
    _positive("database.pool_max", c.database.pool_max)
    if c.index.feed not in ("auto", "poll"):
        raise ConfigError(f"index.feed: must be auto or poll, got {c.index.feed!r}")
    _positive("index.poll_interval_s", c.index.poll_interval_s)
    _positive("imports.lease_s", c.imports.lease_s)
    _positive("cache.load_timeout_s", c.cache.load_timeout_s)
    _positive("cache.poll_s", c.cache.poll_s)
    _positive("database.connect_timeout_s", c.database.connect_timeout_s)
    n = c.numbering
    if not (
        n.country_code.isdigit() and 1 <= len(n.country_code) <= 3 and n.country_code[0] != "0"
    ):
        raise ConfigError(f"numbering.country_code: must be 1-3 digits, got {n.country_code!r}")
    if n.trunk_prefix and not n.trunk_prefix.isdigit():
        raise ConfigError(f"numbering.trunk_prefix: must be digits, got {n.trunk_prefix!r}")
    if not n.international_prefix.isdigit():
        raise ConfigError(
            f"numbering.international_prefix: must be digits, got {n.international_prefix!r}"
        )
    _positive("index.heartbeat_s", c.index.heartbeat_s)
    _positive("index.compact_threshold", c.index.compact_threshold)
    _positive("index.ready_max_staleness_s", c.index.ready_max_staleness_s)
    _positive("index.feed_retention_days", c.index.feed_retention_days)
    _positive("index.max_warn_staleness_s", c.index.max_warn_staleness_s)
    for item in c.announcement.test_numbers:
        number, _, recording = item.partition(":")
        if not (number.startswith("+") and number[1:].isdigit()) or (
            recording and not recording.isdigit()
        ):
            raise ConfigError(
                f"announcement.test_numbers: {item!r} is not +E164 or +E164:recording_id"
            )
    for item in c.lab.users:
        number, sep, password = item.partition(":")
        if not sep or not password or not (number.startswith("+") and number[1:].isdigit()):
            raise ConfigError(f"lab.users: {item.split(':')[0]!r}: must be +E164:password")
    _positive("lab.callee_tone_s", c.lab.callee_tone_s)
    if c.lab.answer_after_s < 0:
        raise ConfigError(f"lab.answer_after_s: must be >= 0, got {c.lab.answer_after_s}")
    rb = c.ringback
    if rb.mode not in ("redirect", "ringback"):
        raise ConfigError(f"ringback.mode: must be redirect or ringback, got {rb.mode!r}")
    if rb.answer_after not in ("answer", "first_play"):
        raise ConfigError(
            f"ringback.answer_after: must be answer or first_play, got {rb.answer_after!r}"
        )
    for name in ("max_ring_s", "max_call_s", "callee_timeout_s", "rtpengine_timeout_s"):
        _positive(f"ringback.{name}", getattr(rb, name))
    if rb.media not in ("builtin", "rtpengine"):
        raise ConfigError(f"ringback.media: must be builtin or rtpengine, got {rb.media!r}")
    try:
        host, port = rb.rtpengine_address()
        ipaddress.ip_address(host)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"ringback.rtpengine_ng: must be IP:port (IPv6 in brackets), got {rb.rtpengine_ng!r}"
        ) from None
    if rb.next_hop == "self" and not c.lab.enabled:
        raise ConfigError('ringback.next_hop: "self" is for lab mode ([lab] enabled) only')
    if rb.next_hop and rb.next_hop != "self":
        try:
            host, port = rb.next_hop_address() or ("", 0)
            ipaddress.ip_address(host)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"ringback.next_hop: must be IP:port (IPv6 in brackets), got {rb.next_hop!r}"
            ) from None
    if c.shutdown.drain_s < 0:
        raise ConfigError(f"shutdown.drain_s: must be >= 0, got {c.shutdown.drain_s}")
    a = c.announcement
    _positive("announcement.repeat", a.repeat)
    if a.gap_ms < 0:
        raise ConfigError(f"announcement.gap_ms: must be >= 0, got {a.gap_ms}")
    _positive("announcement.max_concurrent", a.max_concurrent)
    if a.media_ip:
        try:
            ipaddress.ip_address(a.media_ip)
        except ValueError:
            raise ConfigError(f"announcement.media_ip: not an IP address: {a.media_ip!r}") from None
    _port("announcement.rtp_port_min", a.rtp_port_min, allow_zero=False)
    _port("announcement.rtp_port_max", a.rtp_port_max, allow_zero=False)
    if a.rtp_port_max <= a.rtp_port_min:
        raise ConfigError("announcement.rtp_port_max: must be greater than rtp_port_min")
    retention = c.announcements.retention_days
    if retention != 0 and retention < MIN_RETENTION_DAYS:
        raise ConfigError(
            f"announcements.retention_days: must be 0 (keep for ever) or at least "
            f"{MIN_RETENTION_DAYS} (proof of play must outlast disputes), got {retention}"
        )
    if not 1 <= c.announcements.partitions_ahead_days <= 366:
        raise ConfigError(
            "announcements.partitions_ahead_days: must be 1-366, got "
            f"{c.announcements.partitions_ahead_days}"
        )
    _positive("listings.max_duration_days", c.listings.max_duration_days)
    if c.listings.notice_period_days < 0:
        raise ConfigError(
            f"listings.notice_period_days: must be >= 0, got {c.listings.notice_period_days}"
        )
    if c.listings.notice_period_days >= c.listings.max_duration_days:
        raise ConfigError("listings.notice_period_days: must be less than max_duration_days")
    r = c.recordings
    for key in ("max_bytes", "max_duration_s", "min_duration_s", "decode_timeout_s"):
        _positive(f"recordings.{key}", getattr(r, key))
    _positive("recordings.max_concurrent_decodes", r.max_concurrent_decodes)
    if r.min_duration_s >= r.max_duration_s:
        raise ConfigError("recordings.min_duration_s: must be less than max_duration_s")
    if not -40.0 <= r.target_lufs <= -6.0:
        raise ConfigError(f"recordings.target_lufs: must be -40 to -6, got {r.target_lufs}")
    if not -20.0 <= r.peak_dbfs <= 0.0:
        raise ConfigError(f"recordings.peak_dbfs: must be -20 to 0, got {r.peak_dbfs}")
    if not -90.0 <= r.silence_dbfs <= -20.0:
        raise ConfigError(f"recordings.silence_dbfs: must be -90 to -20, got {r.silence_dbfs}")
    _positive("imports.max_bytes", c.imports.max_bytes)
    _positive("imports.batch_rows", c.imports.batch_rows)
    e = c.events
    for key in (
        "poll_interval_s", "batch_size", "concurrency", "timeout_s", "max_attempts",
        "backoff_initial_s", "backoff_max_s",
    ):  # fmt: skip
        _positive(f"events.{key}", getattr(e, key))
    if e.backoff_max_s < e.backoff_initial_s:
        raise ConfigError("events.backoff_max_s: must be at least backoff_initial_s")
    if e.hourly_delay_s < 0:
        raise ConfigError(f"events.hourly_delay_s: must be >= 0, got {e.hourly_delay_s}")
    if c.log.level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"log.level: must be debug, info, warning or error, got {c.log.level!r}")
    if c.log.format not in {"auto", "json", "text"}:
        raise ConfigError(f"log.format: must be auto, json or text, got {c.log.format!r}")
