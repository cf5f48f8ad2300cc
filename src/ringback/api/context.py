"""What the HTTP handlers are given: the registry stores, the rules they enforce, the
listing index and its status, and the metrics. The composition root builds one
`ApiContext` and hands it to `build_app`; handlers reach it with `context(request)`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from ringback.config import (
    HttpConfig,
    ImportsConfig,
    ListingsConfig,
    PortalConfig,
    RecordingsConfig,
)
from ringback.event_destinations import WebhookPolicy
from ringback.metrics import Registry
from ringback.registry.audit import AuditTrail
from ringback.registry.courts import Courts, Tokens
from ringback.registry.events import Events
from ringback.registry.import_csv import ImportOptions
from ringback.registry.imports import Imports
from ringback.registry.listing_index import ListingIndex
from ringback.registry.listings import Listings
from ringback.registry.numbers import NumberingPlan
from ringback.registry.payments import Payments
from ringback.registry.portal_sessions import PortalSessions
from ringback.registry.proof_of_play import PlayStats
from ringback.registry.recordings import Recordings


class IndexStatus(Protocol):
    """How current this node's listing index is (`ringback.registry.feed.IndexSync`)."""

    @property
    def loaded(self) -> bool: ...

    @property
    def last_seq(self) -> int: ...

    @property
    def staleness_s(self) -> float: ...


@dataclass(frozen=True)
class ApiContext:
    courts: Courts
    tokens: Tokens
    listings: Listings
    recordings: Recordings
    payments: Payments
    imports: Imports
    events: Events
    audit: AuditTrail
    numbering: NumberingPlan
    listing_rules: ListingsConfig
    recording_rules: RecordingsConfig
    import_rules: ImportsConfig
    import_options: ImportOptions  # of the config at start; effective_reason is the request's
    index: ListingIndex  # the HTTP dip answers from it
    index_status: IndexStatus
    ready_max_staleness_s: float
    metrics: Registry
    database_reachable: Callable[[], Awaitable[bool]]
    # the court web portal (`ringback.api.portal`)
    sessions: PortalSessions
    plays: PlayStats
    portal_rules: PortalConfig
    http_rules: HttpConfig
    event_destinations: WebhookPolicy  # where event webhooks may go
    # Called with a new recording's id once it is stored: this node prepares it in every
    # codec in the background, so its first call does not wait for ffmpeg.
    recording_added: Callable[[int], None] = lambda recording_id: None


CONTEXT: web.AppKey[ApiContext] = web.AppKey("context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
