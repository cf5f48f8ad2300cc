"""Recordings API against real PostgreSQL and real ffmpeg, with files made at test time."""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import struct
import subprocess
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pyloudnorm
import pytest

from ringback.config import load_config
from ringback.media.g711 import alaw_decode, ulaw_decode
from ringback.media.ingest import IngestError, IngestLimits, prepare
from ringback.registry.common import Principal
from ringback.server import Service

WHO = Principal("test", "operator")
MAX_BYTES = 2 * 1024 * 1024


def _ff(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real audio files in many formats, plus broken ones. Made once per session."""
    d = tmp_path_factory.mktemp("media")
    speech = d / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(speech), "Warning. This number is listed by the court."],
        check=True,
    )
    # 1 s silence, 5 s of tone + speech, 1 s silence; 44.1 kHz stereo.
    _ff(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=5:sample_rate=44100",
        "-i", str(speech),
        "-filter_complex",
        "[0]volume=0.5[a];[1]aresample=44100,apad[b];[a][b]amix=inputs=2:duration=first,"
        "adelay=1000|1000,apad=pad_dur=1",
        "-ac", "2", str(d / "content.wav"),
    )  # fmt: skip
    src = str(d / "content.wav")
    _ff("-i", src, "-c:a", "libmp3lame", "-b:a", "128k", str(d / "content.mp3"))
    _ff("-i", src, "-c:a", "libopus", str(d / "content.ogg"))
    _ff("-i", src, "-c:a", "aac", str(d / "content.m4a"))
    _ff("-i", src, str(d / "content.flac"))
    # AMR-NB and AMR-WB, as mobile phones record: encoders from libavcodec-extra (scripts/setup).
    encoders = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    for encoder in ("libopencore_amrnb", "libvo_amrwbenc"):
        if encoder not in encoders:
            pytest.fail(f"ffmpeg has no {encoder} encoder: apt-get install -y libavcodec-extra")
    _ff(
        "-i", src, "-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb", "-b:a", "12.2k",
        str(d / "content.amr"),
    )  # fmt: skip
    _ff(
        "-i", src, "-ar", "16000", "-ac", "1", "-c:a", "libvo_amrwbenc", "-b:a", "23.85k",
        "-f", "amr", str(d / "content.awb"),
    )  # fmt: skip
    # Equal-level 1 kHz and 6 kHz tones at 48 kHz: 6 kHz must not alias to 2 kHz.
    _ff(
        "-f", "lavfi", "-i", "sine=frequency=1000:duration=3:sample_rate=48000",
        "-f", "lavfi", "-i", "sine=frequency=6000:duration=3:sample_rate=48000",
        "-filter_complex", "[0][1]amix=inputs=2:normalize=0,volume=2", str(d / "alias.wav"),
    )  # fmt: skip
    _ff("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "4", str(d / "silence.wav"))
    _ff(
        "-f", "lavfi", "-i", "sine=frequency=523:duration=61", "-c:a", "libmp3lame",
        str(d / "long.mp3"),
    )  # fmt: skip
    # 0.6 s of sound, 20 s of silence, 0.6 s of sound.
    _ff(
        "-f", "lavfi", "-i", "sine=frequency=700:duration=0.6",
        "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono:d=20",
        "-f", "lavfi", "-i", "sine=frequency=700:duration=0.6",
        "-filter_complex",
        "[0]aresample=44100[a];[2]aresample=44100[c];[a][1][c]concat=n=3:v=0:a=1",
        str(d / "mostly_silent.wav"),
    )  # fmt: skip
    mp3 = (d / "content.mp3").read_bytes()
    (d / "truncated.mp3").write_bytes(mp3[: len(mp3) * 2 // 5])
    rng = np.random.default_rng(5)
    (d / "corrupt.mp3").write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (d / "zero.mp3").write_bytes(b"")
    (d / "text.mp3").write_text("Dear court, please find attached the recording.\n" * 50)
    (d / "big.wav").write_bytes(b"RIFF" + bytes(MAX_BYTES + 100_000))
    return d


@dataclass
class Api:
    service: Service
    base: str
    http: aiohttp.ClientSession
    operator: str
    switch: str
    court_a: Any
    token_a: str
    court_b: Any
    token_b: str

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def upload(self, token: str, path: Path, **fields: str) -> tuple[int, dict[str, Any]]:
        form = aiohttp.FormData()
        for key, value in fields.items():
            form.add_field(key, value)
        form.add_field("file", path.read_bytes(), filename=path.name)
        async with self.http.post(
            self.base + "/v1/recordings", data=form, headers=self.auth(token)
        ) as r:
            return r.status, await r.json()

    async def get(self, token: str, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path, headers=self.auth(token)) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.read()


@pytest.fixture
async def api(database: str) -> AsyncIterator[Api]:
    config = load_config(None, env={})
    config.database.url = database
    config.http.port = 0
    config.http.check_answers = True
    config.sip.port = 0  # not 5060: other suites may run on this machine
    config.recordings.max_bytes = MAX_BYTES
    config.events.enabled = False
    service = Service(config)
    await service.start()
    store = service.store
    court_a, token_a, _ = await store.courts.create("Court A", WHO)
    court_b, token_b, _ = await store.courts.create("Court B", WHO)
    _, operator = await store.tokens.issue("operator", None, "test operator", WHO)
    _, switch = await store.tokens.issue("switch", None, "test switch", WHO)
    async with aiohttp.ClientSession() as http:
        yield Api(
            service,
            f"http://127.0.0.1:{service.http_port}",
            http,
            operator,
            switch,
            court_a,
            token_a,
            court_b,
            token_b,
        )
    await service.stop()


def _pcm_of_wav(data: bytes, rate: int = 8000) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == rate
        assert w.getnchannels() == 1
        assert w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _to_8k(x: np.ndarray, rate: int) -> np.ndarray:
    """Band-limited (FFT) resampling to 8 kHz, for comparing with 8 kHz audio."""
    m = round(len(x) * 8000 / rate)
    return np.fft.irfft(np.fft.rfft(x)[: m // 2 + 1], m) * (m / len(x))


def _best_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of ``a`` and ``b`` at their best lag (codec delay)."""
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    size = 1 << (2 * n).bit_length()
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    return float(xc.max() / np.sqrt(np.dot(a, a) * np.dot(b, b)))


FORMATS = [
    "content.wav",
    "content.mp3",
    "content.ogg",
    "content.m4a",
    "content.flac",
    "content.amr",
    "content.awb",
]


@pytest.mark.parametrize("name", FORMATS)
async def test_upload_each_format_becomes_normalised_trimmed_audio_at_its_best_rate(
    api: Api, media: Path, name: str
) -> None:
    # wideband uploads stay wideband (16 kHz); AMR-NB came at 8 kHz and stays so
    rate = 8000 if name.endswith(".amr") else 16000
    path = media / name
    status, body = await api.upload(api.token_a, path, name="Warning A")
    assert status == 201, body
    assert body["name"] == "Warning A"
    assert body["court_id"] == str(api.court_a["id"])
    assert body["original"]["filename"] == name
    assert body["original"]["bytes"] == path.stat().st_size
    assert len(body["original"]["sha256"]) == 64
    # 1 s of leading and trailing silence trimmed; 5 s of sound left.
    assert abs(body["duration_ms"] - 5000) <= 50, body
    assert abs(body["loudness_lufs"] - (-19.0)) <= 1.0, body
    assert body["processing"]["sample_rate"] == rate

    status, wav = await api.get(api.token_a, f"/v1/recordings/{body['id']}/audio.wav")
    assert status == 200
    pcm = _pcm_of_wav(wav, rate)
    assert abs(len(pcm) / (rate / 1000) - 5000) <= 50
    x = pcm.astype(np.float64) / 32768
    assert float(np.abs(x).max()) <= 10 ** (-1.0 / 20) + 1e-3  # limited at -1 dBFS
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(x) - (-19.0)) <= 1.0
    stored = await api.service.pool.fetchrow(
        "SELECT pcm, duration_ms, original_format, sample_rate FROM recordings WHERE id = $1",
        body["id"],
    )
    assert stored["sample_rate"] == rate
    assert bytes(stored["pcm"]) == pcm.tobytes()
    assert stored["duration_ms"] == body["duration_ms"]
    assert "/" in stored["original_format"]


def _levels(x: np.ndarray, rate: int) -> Any:
    x = x[rate // 10 : -rate // 10] * np.hanning(len(x) - 2 * (rate // 10))
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)

    def level(f: float) -> float:
        band = (freqs > f - 30) & (freqs < f + 30)
        return 20 * math.log10(float(spectrum[band].max()) + 1e-12)

    return level


async def test_wideband_is_kept_and_narrowband_is_anti_aliased(api: Api, media: Path) -> None:
    status, body = await api.upload(api.token_a, media / "alias.wav")
    assert status == 201, body
    # stored at 16 kHz: the 6 kHz tone is kept, as loud as the 1 kHz one (wideband codecs)
    _, wav = await api.get(api.token_a, f"/v1/recordings/{body['id']}/audio.wav")
    level = _levels(_pcm_of_wav(wav, 16000).astype(np.float64), 16000)
    assert abs(level(1000) - level(6000)) < 3, (level(1000), level(6000))
    # as G.711 sends it (8 kHz): 6 kHz would alias to 8 - 6 = 2 kHz; > 40 dB under 1 kHz
    _, g711 = await api.get(api.token_a, f"/v1/recordings/{body['id']}/audio.wav?codec=pcmu")
    offset = g711.index(b"data")
    size = struct.unpack_from("<I", g711, offset + 4)[0]
    level = _levels(ulaw_decode(g711[offset + 8 : offset + 8 + size]).astype(np.float64), 8000)
    assert level(1000) - level(2000) > 40, (level(1000), level(2000))


@pytest.mark.parametrize(
    ("name", "status", "code", "words"),
    [
        ("corrupt.mp3", 415, "not_audio", "not an audio file ffmpeg can decode"),
        ("zero.mp3", 422, "empty_file", "empty"),
        ("text.mp3", 415, "not_audio", "not an audio file ffmpeg can decode"),
        ("truncated.mp3", 422, "truncated", "truncated"),
        ("silence.wav", 422, "silent", "silent"),
        ("long.mp3", 422, "too_long", "limit is 60 s"),
        ("mostly_silent.wav", 422, "mostly_silent", "mostly silence"),
        ("big.wav", 413, "too_large", "larger than the limit"),
    ],
)
async def test_bad_uploads_get_precise_4xx(
    api: Api, media: Path, name: str, status: int, code: str, words: str
) -> None:
    got, body = await api.upload(api.token_a, media / name)
    assert got == status, body
    assert body["error"]["code"] == code
    assert words in body["error"]["message"]
    for banner in ("ffmpeg version", "libav", "Copyright", "configuration:", "@ 0x"):
        assert banner not in body["error"]["message"]
    assert await api.service.pool.fetchval("SELECT count(*) FROM recordings") == 0


async def test_byte_limit_is_enforced_while_streaming_a_chunked_upload(api: Api) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = bytes(64 * 1024)
        for _ in range(MAX_BYTES // len(chunk) * 20):
            sent += len(chunk)
            yield chunk

    with aiohttp.MultipartWriter("form-data") as writer:
        part = writer.append(endless(), {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name="file", filename="huge.wav")
    status = 0
    try:
        async with api.http.post(
            api.base + "/v1/recordings", data=writer, headers=api.auth(api.token_a)
        ) as r:
            status = r.status
            body = await r.json()
            assert body["error"]["code"] == "too_large"
    except aiohttp.ClientError:
        status = 413  # the server may close the connection while we are still sending
    assert status == 413
    assert sent < MAX_BYTES * 10  # refused long before the client finished


async def test_preview_in_g711_is_a_wav_with_the_right_format_tag(api: Api, media: Path) -> None:
    status, body = await api.upload(api.token_a, media / "content.flac")
    assert status == 201
    _, pcm_wav = await api.get(api.token_a, f"/v1/recordings/{body['id']}/audio.wav")
    pcm = _to_8k(_pcm_of_wav(pcm_wav, 16000).astype(np.float64), 16000)
    for codec, tag, decode in (("pcmu", 7, ulaw_decode), ("pcma", 6, alaw_decode)):
        status, data = await api.get(
            api.switch, f"/v1/recordings/{body['id']}/audio.wav?codec={codec}"
        )
        assert status == 200
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
        assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
        fmt_tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", data, 20)
        assert (fmt_tag, channels, rate, byte_rate, align, bits) == (tag, 1, 8000, 8000, 1, 8)
        offset = data.index(b"data")
        size = struct.unpack_from("<I", data, offset + 4)[0]
        assert abs(size - len(pcm)) <= 8
        decoded = decode(data[offset + 8 : offset + 8 + size]).astype(np.float64)
        # G.711 of the 8 kHz resampling keeps the audio (SNR ~35 dB on speech levels)
        assert _best_correlation(decoded, pcm) > 0.99
    status, body_err = await api.get(
        api.token_a, f"/v1/recordings/{body['id']}/audio.wav?codec=gsm"
    )
    assert status == 400 and body_err["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("codec", "rate"), [("g722", 16000), ("opus", 16000), ("amr", 8000), ("amr-wb", 16000)]
)
async def test_preview_after_each_codec_sounds_like_the_recording(
    api: Api, media: Path, codec: str, rate: int
) -> None:
    """What a caller offering that codec hears: the recording through the codec (encoded
    as warnings are prepared, decoded by ffmpeg), as 16-bit PCM."""
    status, body = await api.upload(api.token_a, media / "content.flac")
    assert status == 201
    _, pcm_wav = await api.get(api.token_a, f"/v1/recordings/{body['id']}/audio.wav")
    stored = _pcm_of_wav(pcm_wav, 16000).astype(np.float64)
    status, data = await api.get(api.switch, f"/v1/recordings/{body['id']}/audio.wav?codec={codec}")
    assert status == 200, data
    heard = _pcm_of_wav(data, rate).astype(np.float64)
    assert abs(len(heard) / rate - len(stored) / 16000) < 0.1  # the same length
    reference = stored if rate == 16000 else _to_8k(stored, 16000)
    assert _best_correlation(heard, reference) > 0.8, codec


async def test_courts_see_only_their_own_recordings_and_404_for_others(
    api: Api, media: Path
) -> None:
    status, a_rec = await api.upload(api.token_a, media / "content.mp3")
    assert status == 201
    rid = a_rec["id"]
    court_a, court_b = str(api.court_a["id"]), str(api.court_b["id"])
    for path in (f"/v1/recordings/{rid}", f"/v1/recordings/{rid}/audio.wav"):
        status, body = await api.get(api.token_b, path)
        assert status == 404 and body["error"]["code"] == "not_found", path
        status, _ = await api.get(api.token_a, path)
        assert status == 200
        status, _ = await api.get(api.operator, path)
        assert status == 200
    status, body = await api.get(api.token_b, "/v1/recordings")
    assert status == 200 and all(r["id"] != rid for r in body["recordings"])
    status, body = await api.get(api.token_b, f"/v1/recordings?court_id={court_a}")
    assert status == 200 and body["recordings"] == []
    status, body = await api.get(api.token_a, "/v1/recordings")
    assert [r["id"] for r in body["recordings"] if r["court_id"] == court_a] == [rid]
    status, body = await api.get(api.operator, f"/v1/recordings?court_id={court_a}")
    assert [r["id"] for r in body["recordings"]] == [rid]
    status, body = await api.get(api.switch, f"/v1/recordings/{rid}")
    assert status == 403

    async def put_default(token: str, court: str, value: Any) -> tuple[int, Any]:
        async with api.http.put(
            f"{api.base}/v1/courts/{court}/default-recording",
            json={"recording_id": value},
            headers=api.auth(token),
        ) as r:
            return r.status, await r.json()

    assert (await put_default(api.token_b, court_b, rid))[0] == 404  # A's recording
    assert (await put_default(api.token_b, court_a, rid))[0] == 404  # A's court
    # A well-formed id (the schema's integer has no bound) that no recording can have.
    status, body = await put_default(api.token_a, court_a, 10**30)
    assert status == 404 and body["error"]["code"] == "not_found", body
    status, body = await put_default(api.token_a, court_a, rid)
    assert status == 200 and body == {"court_id": court_a, "default_recording_id": rid}
    stored = await api.service.pool.fetchval(
        "SELECT default_recording_id FROM courts WHERE id = $1", api.court_a["id"]
    )
    assert stored == rid
    status, body = await put_default(api.operator, court_a, None)
    assert status == 200
    # The upload and the default change are in the audit trail.
    actions = await api.service.pool.fetch(
        "SELECT action FROM audit_events WHERE court_id = $1 ORDER BY id", api.court_a["id"]
    )
    names = [a["action"] for a in actions]
    assert "recording.create" in names and names.count("court.default_recording") == 2


async def test_operator_uploads_for_a_court_named_in_the_form(api: Api, media: Path) -> None:
    status, body = await api.upload(api.operator, media / "content.ogg")
    assert status == 422 and "court_id" in body["error"]["message"]
    status, body = await api.upload(
        api.operator, media / "content.ogg", court_id="00000000-0000-0000-0000-000000000001"
    )
    assert status == 404
    status, body = await api.upload(
        api.operator, media / "content.ogg", court_id=str(api.court_b["id"])
    )
    assert status == 201 and body["court_id"] == str(api.court_b["id"])
    # A court cannot upload into another court.
    status, body = await api.upload(
        api.token_a, media / "content.ogg", court_id=str(api.court_b["id"])
    )
    assert status == 404


async def test_not_multipart_and_no_file_and_no_token(api: Api) -> None:
    async with api.http.post(
        api.base + "/v1/recordings", data=b"xx", headers=api.auth(api.token_a)
    ) as r:
        assert r.status == 415
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("name", "no file")
    async with api.http.post(
        api.base + "/v1/recordings", data=form, headers=api.auth(api.token_a)
    ) as r:
        assert r.status == 400
    async with api.http.post(api.base + "/v1/recordings", data=b"") as r:
        assert r.status == 401
    status, _body = await api.get(api.token_a, "/v1/recordings/99999999999999999999")
    assert status == 404


async def test_decode_timeout_kills_ffmpeg(tmp_path: Path) -> None:
    big = tmp_path / "big.flac"
    _ff("-f", "lavfi", "-i", "anoisesrc=d=50:r=96000", "-ac", "2", str(big))
    with pytest.raises(IngestError) as info:
        await prepare(big, IngestLimits(decode_timeout_s=0.05))
    assert info.value.code == "decode_timeout"
    await asyncio.sleep(0.1)
    ps = subprocess.run(["pgrep", "-f", f"file:{big}"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""  # no ffmpeg/ffprobe left behind


def test_tools_present() -> None:
    for tool in ("ffmpeg", "ffprobe", "espeak-ng", "sox"):
        assert shutil.which(tool), f"{tool} is needed (install it in .ci/run)"
