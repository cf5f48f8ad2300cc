"""Listings: a court's order that callers of a number hear a warning, and its life
(listed, effective, suspended, resumed, cleared, expired).

A listing is one case of one court: a court may list a number under several cases, each
its own listing (paying one case clears that one), and several courts may list a number.

Every change writes its audit event and its outgoing event (the outbox) in the same
transaction as the change.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from ringback.registry import audit
from ringback.registry.common import Ambiguous, Conflict, NotFound, Principal, jsonable
from ringback.registry.outbox import enqueue_event
from ringback.registry.proof_of_play import totals as play_totals

COLUMNS = (
    "id, number, court_id, case_ref, recording_id, status, listed_at, effective_at, "
    "effective_reason, expires_at, cleared_at, clear_reason, suspend_reason, updated_at, "
    "import_id"
)


def listing_event(
    row: asyncpg.Record | dict[str, Any], who: Principal, *, reason: str | None = None
) -> dict[str, Any]:
    """The payload of a listing.* event: JSON-ready, numbers in E.164 with '+'."""
    payload: dict[str, Any] = {
        "listing_id": row["id"],
        "number": f"+{row['number']}",
        "court_id": str(row["court_id"]),
        "case_ref": row["case_ref"],
        "status": row["status"],
        "effective_at": row["effective_at"].isoformat(),
        "expires_at": row["expires_at"].isoformat(),
        "actor": who.actor,
    }
    if reason is not None:
        payload["reason"] = reason
    return payload


async def _lock_open(
    conn: asyncpg.Connection, court_id: uuid.UUID, number: int, case_ref: str | None
) -> list[asyncpg.Record]:
    """The court's open (active or suspended) listings of `number`, of one case if given
    (then at most one), locked for update, first-listed first."""
    return list(
        await conn.fetch(
            f"SELECT {COLUMNS} FROM listings WHERE court_id = $1 AND number = $2 "
            "AND ($3::text IS NULL OR case_ref = $3) "
            "AND status IN ('active', 'suspended') ORDER BY listed_at, id FOR UPDATE",
            court_id,
            number,
            case_ref,
        )
    )


class Listings:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(
        self,
        court_id: uuid.UUID,
        number: int,
        case_ref: str,
        expires_at: datetime,
        who: Principal,
        *,
        effective_at: datetime | None = None,
        recording_id: int | None = None,
        effective_reason: str | None = None,
        default_effective_at: datetime | None = None,
    ) -> dict[str, Any]:
        """List `number` for the court under `case_ref`, or update the court's open listing
        of it for that case (another case of the same court is another listing).

        A new listing becomes effective at `effective_at` (default: `default_effective_at`,
        else now); an update keeps the listing's effective_at unless one is given.
        `recording_id` must be the court's own recording or a shipped one (court_id NULL):
        `NotFound` otherwise. Returns the row as a dict with an extra boolean `created`.
        """
        for attempt in range(2):
            try:
                return await self._put(
                    court_id,
                    number,
                    case_ref,
                    expires_at,
                    who,
                    effective_at,
                    recording_id,
                    effective_reason,
                    default_effective_at,
                )
            except asyncpg.UniqueViolationError:
                # Two first listings of one case's number raced; the loser updates.
                if attempt:
                    raise Conflict("the listing changed concurrently; try again") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _put(
        self,
        court_id: uuid.UUID,
        number: int,
        case_ref: str,
        expires_at: datetime,
        who: Principal,
        effective_at: datetime | None,
        recording_id: int | None,
        effective_reason: str | None,
        default_effective_at: datetime | None,
    ) -> dict[str, Any]:
        async with self.pool.acquire() as conn, conn.transaction():
            if recording_id is not None:
                owner = await conn.fetchrow(
                    "SELECT court_id FROM recordings WHERE id = $1", recording_id
                )
                if owner is None or owner["court_id"] not in (None, court_id):
                    raise NotFound(f"no recording {recording_id} of this court")
            opened = await _lock_open(conn, court_id, number, case_ref)
            before = opened[0] if opened else None
            if before is None:
                after = await conn.fetchrow(
                    "INSERT INTO listings (number, court_id, case_ref, recording_id, "
                    "effective_at, expires_at, effective_reason) "
                    "VALUES ($1, $2, $3, $4, coalesce($5, $8, now()), $6, $7) "
                    f"RETURNING {COLUMNS}",
                    number,
                    court_id,
                    case_ref,
                    recording_id,
                    effective_at,
                    expires_at,
                    effective_reason,
                    default_effective_at,
                )
                action = "listing.create"
            else:
                after = await conn.fetchrow(
                    "UPDATE listings SET recording_id = $2, "
                    "effective_at = coalesce($3, effective_at), expires_at = $4, "
                    "effective_reason = CASE WHEN $3::timestamptz IS NULL THEN effective_reason "
                    "ELSE $5 END, "
                    f"updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
                    before["id"],
                    recording_id,
                    effective_at,
                    expires_at,
                    effective_reason,
                )
                action = "listing.update"
            assert after is not None
            await audit.record(
                conn,
                who,
                action,
                f"listing:{after['id']}",
                court_id=court_id,
                before=before,
                after=after,
            )
            if before is None:
                await enqueue_event(conn, "listing.created", listing_event(after, who))
        return {**dict(after), "created": before is None}

    async def change_status(
        self,
        court_id: uuid.UUID,
        number: int,
        new_status: str,
        who: Principal,
        *,
        reason: str = "",
        case_ref: str | None = None,
    ) -> asyncpg.Record:
        """Clear, suspend or resume the court's open listing of `number` (of `case_ref`).

        `NotFound` if there is none; `Ambiguous` if no case is given and the court lists
        the number under several; `Conflict` if the listing cannot make that change.
        """
        allowed_from = {
            "cleared": ("active", "suspended"),
            "suspended": ("active",),
            "active": ("suspended",),
        }[new_status]
        async with self.pool.acquire() as conn, conn.transaction():
            opened = await _lock_open(conn, court_id, number, case_ref)
            if not opened:
                raise NotFound("the court has no open listing of this number")
            if len(opened) > 1:
                raise Ambiguous(
                    f"the court lists this number under {len(opened)} cases; give case_ref",
                    [r["case_ref"] for r in opened],
                )
            before = opened[0]
            if before["status"] not in allowed_from:
                raise Conflict(f"listing is {before['status']}; cannot become {new_status}")
            after = await conn.fetchrow(
                "UPDATE listings SET status = $2, updated_at = now(), "
                "cleared_at = CASE WHEN $2 = 'cleared' THEN now() ELSE cleared_at END, "
                "clear_reason = CASE WHEN $2 = 'cleared' THEN $3 ELSE clear_reason END, "
                "suspend_reason = CASE WHEN $2 = 'suspended' THEN $3 "
                "WHEN $2 = 'active' THEN NULL ELSE suspend_reason END "
                f"WHERE id = $1 RETURNING {COLUMNS}",
                before["id"],
                new_status,
                reason or None,
            )
            action = {
                "cleared": "listing.clear",
                "suspended": "listing.suspend",
                "active": "listing.resume",
            }[new_status]
            after_json = jsonable(after) or {}
            if reason:
                after_json["reason"] = reason
            await audit.record(
                conn,
                who,
                action,
                f"listing:{before['id']}",
                court_id=court_id,
                before=before,
                after=after_json,
            )
            assert after is not None
            event = {
                "cleared": "listing.cleared",
                "suspended": "listing.suspended",
                "active": "listing.resumed",
            }[new_status]
            await enqueue_event(conn, event, listing_event(after, who, reason=reason or None))
        return after

    async def open_courts(self, number: int) -> list[uuid.UUID]:
        """Courts with an open (active or suspended) listing of `number`, first-listed first."""
        rows = await self.pool.fetch(
            "SELECT court_id FROM listings WHERE number = $1 AND status IN ('active', "
            "'suspended') GROUP BY court_id ORDER BY min(listed_at), min(id)",
            number,
        )
        return [r["court_id"] for r in rows]

    async def get(self, listing_id: int, court_id: uuid.UUID | None) -> asyncpg.Record | None:
        """One listing by id; only if it is `court_id`'s when that is given."""
        return await self.pool.fetchrow(
            f"SELECT {COLUMNS} FROM listings WHERE id = $1 AND ($2::uuid IS NULL OR court_id = $2)",
            listing_id,
            court_id,
        )

    async def of_number(self, number: int, court_id: uuid.UUID | None) -> list[asyncpg.Record]:
        """Every listing of `number` (history included), newest first; one court's if given."""
        return list(
            await self.pool.fetch(
                f"SELECT {COLUMNS} FROM listings WHERE number = $1 "
                "AND ($2::uuid IS NULL OR court_id = $2) ORDER BY id DESC LIMIT 1000",
                number,
                court_id,
            )
        )

    async def search(
        self,
        *,
        court_id: uuid.UUID | None,
        status: str | None,
        case_ref: str | None,
        number: int | None,
        after_id: int,
        limit: int,
        import_id: uuid.UUID | None = None,
    ) -> list[asyncpg.Record]:
        """Listings by filters, ordered by id, after `after_id` (keyset paging);
        `import_id`: the listings that bulk import wrote (created or updated)."""
        return list(
            await self.pool.fetch(
                f"SELECT {COLUMNS} FROM listings "
                "WHERE id > $1 AND ($2::uuid IS NULL OR court_id = $2) "
                "AND ($3::text IS NULL OR case_ref = $3) "
                "AND ($4::int8 IS NULL OR number = $4) "
                "AND ($5::text IS NULL OR $5 = CASE WHEN status IN ('active', 'suspended') "
                "AND expires_at <= now() THEN 'expired' ELSE status END) "
                "AND ($7::uuid IS NULL OR id IN "
                "(SELECT listing_id FROM import_listings WHERE import_id = $7)) "
                "ORDER BY id LIMIT $6",
                after_id,
                court_id,
                case_ref,
                number,
                status,
                limit,
                import_id,
            )
        )

    async def stats(self, court_id: uuid.UUID | None) -> dict[str, Any]:
        """Listings by status and announcements by outcome (one court's if given), read
        from one snapshot."""
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            listing_rows = await conn.fetch(
                "SELECT CASE WHEN status IN ('active', 'suspended') AND expires_at <= now() "
                "THEN 'expired' ELSE status END AS s, count(*) AS n, "
                "count(*) FILTER (WHERE status = 'active' AND effective_at > now() "
                "AND expires_at > now()) AS pending "
                "FROM listings WHERE ($1::uuid IS NULL OR court_id = $1) GROUP BY 1",
                court_id,
            )
            # from the rollup kept with every insert (it outlives days dropped for retention)
            announcements = await play_totals(conn, court_id)
        listings = {s: 0 for s in ("active", "suspended", "cleared", "expired")}
        pending = 0
        for row in listing_rows:
            listings[row["s"]] = row["n"]
            pending += row["pending"]
        return {
            "listings": {**listings, "in_notice_period": pending},
            "announcements": {**announcements, "total": sum(announcements.values())},
        }
