"""Audio ingest: any file ffmpeg reads → what callers hear (mono s16le, normalised), kept
at 16 kHz when the upload has it (wideband codecs — G.722, AMR-WB, Opus — then play
wideband audio) and at 8 kHz when it came narrowband (G.711, AMR-NB: nothing to keep).

Steps, none of which blocks the event loop:

1. ``ffprobe`` reads the container (format, audio codec, declared duration). Only audio
   and common audio-in-video demuxers are allowed (no playlists, no network protocols).
2. ``ffmpeg`` decodes the first audio stream and resamples **inside ffmpeg** with the SoX
   resampler (a steep anti-alias low-pass): pydub's ``set_frame_rate`` uses
   ``audioop.ratecv``, which has no anti-alias filter. A subprocess, killed on timeout or
   once the output passes the duration cap.
3. In a thread, with numpy: reject silent and mostly-silent audio and audio shorter than the
   container declares (a truncated MP3 decodes without error); trim leading and trailing
   silence; loudness-normalise to a telephone target measured per ITU-R BS.1770
   (pyloudnorm) with a look-ahead peak limiter so nothing clips.

Failures raise :class:`IngestError` with a stable ``code`` and a message meant for users;
ffmpeg's own output is never part of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["IngestError", "IngestLimits", "PreparedAudio", "condition", "prepare", "probe"]

RATE: Final = 8000  # narrowband
WIDE: Final = 16000  # wideband: what an upload sampled at 16 kHz or more is kept at
PAD_FRAMES: Final = 1  # keep 10 ms either side of the sound when trimming
MAX_GAIN_DB: Final = 40.0

# Demuxers ffmpeg may use on an upload: audio formats and the usual audio-in-video
# containers. No playlists (hls, concat), no images, no devices, no network protocols.
DEMUXERS: Final = ",".join(
    [
        "wav", "w64", "mp3", "ogg", "mov", "mp4", "m4a", "3gp", "3g2", "aac", "amr", "amrnb",
        "amrwb", "flac", "matroska", "webm", "aiff", "au", "caf", "wv", "asf", "ac3", "eac3",
        "mp2", "mpegts", "avi", "voc", "gsm", "g722", "g723_1", "g729", "alaw", "mulaw",
        "dts", "ape", "tta", "mpc", "mpc8", "wsaud", "xwma", "opus", "spx",
    ]
)  # fmt: skip


class IngestError(Exception):
    """An upload that cannot become a recording; `message` is safe to show to users.

    `rule` (default: `code`) and `params` say the same for an interface that translates
    it (the portal): the numbers of the message, unformatted."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 422,
        *,
        rule: str | None = None,
        **params: float,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.rule = rule or code
        self.params = params


@dataclass(frozen=True)
class IngestLimits:
    max_duration_s: float = 60.0
    min_duration_s: float = 0.5
    decode_timeout_s: float = 20.0
    target_lufs: float = -19.0
    peak_dbfs: float = -1.0
    silence_dbfs: float = -50.0
    # Reject audio whose trimmed length is less than this fraction sound.
    min_sound_fraction: float = 0.25


@dataclass(frozen=True)
class ProbeInfo:
    format_name: str
    codec: str
    channels: int
    sample_rate: int
    declared_duration_s: float | None  # None: unknown or only estimated from the bitrate


@dataclass(frozen=True)
class PreparedAudio:
    pcm: bytes  # mono s16le at `rate`
    duration_ms: int
    loudness_lufs: float
    peak_dbfs: float
    gain_db: float
    decoded_duration_s: float
    trimmed_start_ms: int
    trimmed_end_ms: int
    probe: ProbeInfo
    rate: int = RATE

    def original_format(self) -> str:
        return f"{self.probe.format_name}/{self.probe.codec}"


NOT_AUDIO = "not an audio file ffmpeg can decode"
# Containers whose declared duration is exact (a header field or a sample count), so audio
# that decodes much shorter is truncated. Others (AMR, ADTS AAC, ...) only estimate it.
EXACT_DURATION_FORMATS: Final = frozenset(
    {"wav", "w64", "mp3", "flac", "mov", "ogg", "aiff", "caf", "matroska", "wv"}
)


async def _run(
    args: list[str], deadline: float, stdout_cap: int | None = None
) -> tuple[int, bytes, bytes, bool]:
    """Run a process; (returncode, stdout, stderr, capped). Killed at `deadline` or the cap."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    chunks: list[bytes] = []
    size = 0
    capped = False

    async def read_out() -> None:
        nonlocal size, capped
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if stdout_cap is not None and size > stdout_cap:
                capped = True
                proc.kill()
                return

    async def read_err() -> bytes:
        assert proc.stderr is not None
        return await proc.stderr.read(1 << 16)

    try:
        async with asyncio.timeout_at(deadline):
            _, err = await asyncio.gather(read_out(), read_err())
            code = await proc.wait()
    except TimeoutError:
        raise IngestError(
            "decode_timeout", "decoding took too long; try a shorter or simpler file"
        ) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
    return code, b"".join(chunks), err, capped


async def probe(path: Path, deadline: float) -> ProbeInfo:
    """Container facts from ffprobe; IngestError `not_audio` if it has no audio stream."""
    code, out, err, _ = await _run(
        [
            "ffprobe", "-hide_banner", "-v", "warning", "-format_whitelist", DEMUXERS,
            "-protocol_whitelist", "file", "-print_format", "json",
            "-show_format", "-show_streams", "-select_streams", "a", "file:" + str(path),
        ],
        deadline,
        stdout_cap=1 << 20,
    )  # fmt: skip
    if code != 0:
        raise IngestError("not_audio", NOT_AUDIO, 415)
    try:
        info: dict[str, Any] = json.loads(out or b"{}")
    except ValueError:
        raise IngestError("not_audio", NOT_AUDIO, 415) from None
    streams = info.get("streams") or []
    fmt = info.get("format") or {}
    if not streams or not fmt:
        raise IngestError(
            "not_audio", f"{NOT_AUDIO} (no audio stream found)", 415, rule="no_audio_stream"
        )
    stream = streams[0]
    format_name = str(fmt.get("format_name", "unknown")).split(",")[0]
    estimated = (
        b"Estimating duration from bitrate" in err or format_name not in EXACT_DURATION_FORMATS
    )
    declared: float | None = None
    for source in (stream.get("duration"), fmt.get("duration")):
        try:
            value = float(source) if source is not None else math.nan
        except ValueError:
            continue
        if math.isfinite(value) and value > 0:
            declared = value
            break
    return ProbeInfo(
        format_name=format_name,
        codec=str(stream.get("codec_name", "unknown")),
        channels=int(stream.get("channels") or 0),
        sample_rate=int(stream.get("sample_rate") or 0),
        declared_duration_s=None if estimated else declared,
    )


def decode_cap_s(limits: IngestLimits) -> float:
    """The most audio ever decoded: the limit plus room for silence that trimming removes.
    A small file that decodes to hours (a decompression bomb) stops here: ffmpeg's own
    `-t` ends the output just past it, and the reader kills ffmpeg once it passes."""
    return limits.max_duration_s + 30.0


async def decode(
    path: Path, limits: IngestLimits, deadline: float, rate: int = RATE
) -> npt.NDArray[np.int16]:
    """The first audio stream as mono int16 at ``rate``, anti-alias filtered by the SoX
    resampler."""
    cap_s = decode_cap_s(limits)
    code, out, _err, capped = await _run(
        [
            "ffmpeg", "-nostdin", "-hide_banner", "-v", "error",
            "-format_whitelist", DEMUXERS, "-protocol_whitelist", "file",
            "-i", "file:" + str(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
            "-af", f"highpass=f=60,aresample={rate}:resampler=soxr:precision=28",
            "-ac", "1", "-ar", str(rate), "-t", f"{cap_s + 1:g}",
            "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1",
        ],
        deadline,
        stdout_cap=int(cap_s * rate * 2),
    )  # fmt: skip
    if capped:
        raise IngestError(
            "too_long",
            f"the audio is longer than the limit of {limits.max_duration_s:g} s",
            rule="too_long_decoded",
            limit=limits.max_duration_s,
        )
    if code != 0 and not out:
        raise IngestError("corrupt", "the audio could not be decoded (the file is damaged)")
    usable = len(out) - len(out) % 2
    return np.frombuffer(out[:usable], dtype="<i2").astype(np.int16)


def _db(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0 else -math.inf


def _limit(y: npt.NDArray[np.float64], ceiling: float, rate: int) -> npt.NDArray[np.float64]:
    """Look-ahead peak limiter: no sample above `ceiling`, gain changes smoothed over ~5 ms."""
    magnitude = np.abs(y)
    if magnitude.size == 0 or float(magnitude.max()) <= ceiling:
        return y
    need = np.minimum(1.0, ceiling / np.maximum(magnitude, 1e-12))
    k = rate // 200  # 5 ms
    padded = np.pad(need, k, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)
    held = windows.min(axis=1)  # min over ±k: the gain is down before the peak arrives
    half = k // 2
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    # Averaging over ±half (≤ k) of a min over ±k never exceeds the gain needed at the centre.
    smooth = np.convolve(np.pad(held, half, mode="edge"), kernel, mode="valid")
    out: npt.NDArray[np.float64] = y * np.minimum(smooth, need)
    return out


def condition(
    samples: npt.NDArray[np.int16],
    limits: IngestLimits,
    probe_info: ProbeInfo,
    rate: int = RATE,
) -> PreparedAudio:
    """Check, trim and normalise decoded samples at ``rate`` (CPU work: run it in a thread)."""
    n = int(samples.size)
    frame = rate // 100  # 10 ms analysis frames
    decoded_s = n / rate
    if n == 0:
        raise IngestError("no_audio", "the file holds no audio")
    declared = probe_info.declared_duration_s
    if declared is not None and declared >= 1.0 and decoded_s < declared * 0.9 - 0.2:
        raise IngestError(
            "truncated",
            f"the file declares {declared:.1f} s of audio but only {decoded_s:.1f} s could be "
            "decoded (truncated or damaged file)",
            declared=declared,
            decoded=decoded_s,
        )
    x = samples.astype(np.float64) / 32768.0
    frames = -(-n // frame)
    padded = np.zeros(frames * frame)
    padded[:n] = x
    rms = np.sqrt(np.mean(padded.reshape(frames, frame) ** 2, axis=1))
    with np.errstate(divide="ignore"):
        frame_db = 20.0 * np.log10(rms)
    peak = float(np.abs(x).max())
    loud_frames = frame_db[frame_db > limits.silence_dbfs]
    if loud_frames.size == 0:
        raise IngestError(
            "silent",
            f"the audio is silent (peak {_db(peak):.0f} dBFS): nothing to play",
            peak=_db(peak),
        )
    threshold = max(limits.silence_dbfs, float(np.percentile(loud_frames, 95)) - 40.0)
    active = np.flatnonzero(frame_db > threshold)
    first = max(int(active[0]) - PAD_FRAMES, 0)
    last = min(int(active[-1]) + 1 + PAD_FRAMES, frames)
    start, end = first * frame, min(last * frame, n)
    y = x[start:end]
    duration_s = y.size / rate
    if duration_s > limits.max_duration_s:
        raise IngestError(
            "too_long",
            f"the audio is {duration_s:.1f} s long after trimming silence; "
            f"the limit is {limits.max_duration_s:g} s",
            seconds=duration_s,
            limit=limits.max_duration_s,
        )
    if duration_s < limits.min_duration_s:
        raise IngestError(
            "too_short",
            f"only {duration_s:.2f} s of sound; at least {limits.min_duration_s:g} s is needed",
            seconds=duration_s,
            minimum=limits.min_duration_s,
        )
    sound = active.size / max(last - first, 1)
    if sound < limits.min_sound_fraction:
        raise IngestError(
            "mostly_silent",
            f"the audio is mostly silence: only {sound:.0%} of its {duration_s:.1f} s has sound",
            fraction=sound,
            seconds=duration_s,
        )

    # Imported here, not at the top: pyloudnorm pulls in scipy (about 0.8 s), which
    # `ringback dial` (it decodes with this module) never needs.
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    measured = float(meter.integrated_loudness(y))
    if not math.isfinite(measured) or measured < -70.0:
        raise IngestError(
            "silent", "the audio is too quiet to measure: nothing to play", rule="too_quiet"
        )
    ceiling = 10.0 ** (limits.peak_dbfs / 20.0)
    gain_db = min(limits.target_lufs - measured, MAX_GAIN_DB)
    out = y
    loudness = measured
    for _ in range(3):
        out = _limit(y * 10.0 ** (gain_db / 20.0), ceiling, rate)
        loudness = float(meter.integrated_loudness(out))
        shortfall = limits.target_lufs - loudness
        if abs(shortfall) < 0.3 or gain_db >= MAX_GAIN_DB:
            break
        gain_db = min(gain_db + shortfall, MAX_GAIN_DB)
    pcm = np.clip(np.round(out * 32768.0), -32768, 32767).astype("<i2")
    return PreparedAudio(
        pcm=pcm.tobytes(),
        duration_ms=pcm.size * 1000 // rate,
        loudness_lufs=round(loudness, 2),
        peak_dbfs=round(_db(float(np.abs(out).max())), 2),
        gain_db=round(gain_db, 2),
        decoded_duration_s=round(decoded_s, 3),
        trimmed_start_ms=start * 1000 // rate,
        trimmed_end_ms=(n - end) * 1000 // rate,
        probe=probe_info,
        rate=rate,
    )


async def prepare(path: Path, limits: IngestLimits) -> PreparedAudio:
    """The whole ingest of one file on disk; IngestError on anything users must fix."""
    if path.stat().st_size == 0:
        raise IngestError("empty_file", "the file is empty (0 bytes)")
    deadline = asyncio.get_running_loop().time() + limits.decode_timeout_s
    info = await probe(path, deadline)
    declared = info.declared_duration_s
    if declared is not None and declared > decode_cap_s(limits):
        raise IngestError(  # refused before decoding a sample
            "too_long",
            f"the file declares {declared:.0f} s of audio; "
            f"the limit is {limits.max_duration_s:g} s",
            rule="too_long_declared",
            seconds=declared,
            limit=limits.max_duration_s,
        )
    # Keep wideband what came wideband (an unknown rate is treated as wideband).
    rate = WIDE if info.sample_rate >= WIDE or info.sample_rate <= 0 else RATE
    started = time.monotonic()
    samples = await decode(path, limits, deadline, rate)
    remaining = limits.decode_timeout_s - (time.monotonic() - started)
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(condition, samples, limits, info, rate), max(remaining, 1.0)
        )
    except TimeoutError:
        raise IngestError(
            "decode_timeout", "processing the audio took too long", rule="process_timeout"
        ) from None
