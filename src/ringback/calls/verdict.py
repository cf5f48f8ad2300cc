"""What a test call heard, drawn from a finished :class:`~ringback.calls.uac.Uac`.

- **warning heard**: early media (RTP before the final response) of at least 1 s whose RMS
  level is above -45 dBFS;
- **matches** (with an expected recording): the peak of the normalised cross-correlation of
  the early media with it, over their overlap, is at least 0.6;
- where the call was redirected, the ``X-Ringback-Warning`` seen, the post-dial delay
  (first INVITE → first 18x or final response), what answered in the end (with the
  answered audio's length and strongest frequencies), and any error.

The verdict is a JSON-ready dict; :func:`exit_status` turns it into the process's status.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ringback.calls.uac import Uac
from ringback.media.analysis import RATE, best_alignment, dominant_frequencies, rms_dbfs

__all__ = ["EXIT_NO_FINAL", "HEARD_MIN_DBFS", "HEARD_MIN_S", "MATCH_MIN", "exit_status", "verdict"]

HEARD_MIN_S: Final = 1.0
HEARD_MIN_DBFS: Final = -45.0
MATCH_MIN: Final = 0.6
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_NO_FINAL: Final = 3

Pcm = npt.NDArray[np.int16]


def early_pcm(uac: Uac) -> Pcm:
    """The early media of every INVITE of the call, in order."""
    parts = [a.early.pcm() for a in uac.attempts]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def heard_pcm(uac: Uac) -> Pcm:
    """Everything heard: early media, then the answered call's audio."""
    return np.concatenate([early_pcm(uac), uac.answered.pcm()])


def verdict(
    uac: Uac, *, expected: Pcm | None = None, expected_name: str | None = None
) -> dict[str, Any]:
    early = early_pcm(uac)
    early_s = len(early) / RATE
    level = rms_dbfs(early)
    codec = next((a.early.codec for a in uac.attempts if a.early.packets), None)
    heard = early_s >= HEARD_MIN_S and level > HEARD_MIN_DBFS
    first = uac.attempts[0] if uac.attempts else None
    delay = None
    if first is not None and first.first_response_at is not None:
        delay = round((first.first_response_at - first.sent_at) * 1000, 1)
    last = uac.attempts[-1] if uac.attempts else None
    out: dict[str, Any] = {
        "target": uac.options.target,
        "transport": uac.options.transport,
        "warning": {
            "heard": heard,
            "duration_s": round(early_s, 2),
            "codec": codec,
            "rms_dbfs": round(level, 1) if len(early) else None,
            "packets": sum(a.early.packets for a in uac.attempts),
        },
        "expect": None,
        "warning_header": next(
            (a.warning_header for a in uac.attempts if a.warning_header is not None), None
        ),
        "redirects": [a.contacts[0] for a in uac.attempts if a.contacts],
        "post_dial_delay_ms": delay,
        "final": None
        if last is None or last.status is None
        else {"status": last.status, "reason": last.reason},
        "answered": _answered(uac),
        "attempts": [
            {"uri": a.uri, "responses": a.statuses, "pracks": a.pracks} for a in uac.attempts
        ],
        "error": None if uac.error is None else {"status": uac.error[0], "reason": uac.error[1]},
        "no_final_response": uac.no_final,
    }
    if expected is not None:
        alignment = best_alignment(early, expected) if len(early) else None
        out["expect"] = {
            "file": expected_name,
            "matches": alignment is not None and alignment.correlation >= MATCH_MIN,
            "correlation": None if alignment is None else round(alignment.correlation, 3),
            "offset_s": None if alignment is None else round(alignment.offset_s, 3),
        }
    return out


def _answered(uac: Uac) -> dict[str, Any] | None:
    """The final response of the last INVITE, when it was not a redirect left unfollowed."""
    if not uac.attempts:
        return None
    last = uac.attempts[-1]
    if last.status is None or 300 <= last.status < 400:
        return None
    out: dict[str, Any] = {
        "status": last.status,
        "reason": last.reason,
        "after_redirect": len(uac.attempts) > 1,
    }
    if last.status < 300:
        pcm = uac.answered.pcm()
        frequencies = dominant_frequencies(pcm)
        out.update(
            audio_s=round(len(pcm) / RATE, 2),
            codec=uac.answered.codec,
            rms_dbfs=round(rms_dbfs(pcm), 1) if len(pcm) else None,
            dominant_hz=frequencies[0] if frequencies else None,
            frequencies_hz=frequencies,
            ended_by=uac.ended_by,
        )
    return out


def exit_status(
    result: dict[str, Any], *, expect_warning: bool | None = None, expect_file: bool = False
) -> int:
    """0 normally; 3 when no final response came; with ``expect_warning`` (True: heard,
    False: not heard) or an expected recording, 1 unless that holds."""
    if result["no_final_response"]:
        return EXIT_NO_FINAL
    ok = True
    if expect_warning is not None:
        ok = result["warning"]["heard"] is expect_warning
    if expect_file:
        ok = ok and bool(result["expect"] and result["expect"]["matches"])
    return EXIT_OK if ok else EXIT_FAILED
