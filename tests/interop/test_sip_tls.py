"""SIP over TLS (RFC 3261 §26) against the real `ringback serve`.

The PKI is made by the test with openssl (`harness.make_test_pki`): a CA, ringback's server
certificate, the switch's client certificate, and a client certificate of a CA nobody trusts.
ringback runs with `sip.tls_cert`/`sip.tls_key` and `sip.tls_client_ca` (mutual TLS).

- Kamailio 5.6 with its `tls` module is the switch: sipp calls it over UDP with a `sips:`
  Request-URI, Kamailio relays over TLS with its client certificate, ringback's 302 (a `sips:`
  Contact) comes back over the same TLS connection to Kamailio and on to sipp. Kamailio with
  a certificate of a CA ringback does not trust gets no connection: no INVITE reaches ringback.
- Python's ssl module as a peer: a 302 on the same connection with the Via's TLS transport
  kept; Content-Length framing of several messages in one TLS record; a client with no
  certificate or one from another CA is refused before any SIP is read; a plain-TCP client on
  the TLS port gets no SIP answer and its connection is closed; UDP calls go on meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
from harness import (
    LOCALHOST,
    KamailioProcess,
    MissingBinary,
    PeerFailed,
    Pki,
    ProcessSet,
    RingbackCluster,
    RingbackNode,
    SippResult,
    free_port,
    kamailio_string,
    make_test_pki,
    require_kamailio_modules,
    start_kamailio,
)

from ringback.sip.message import parse_message
from ringback.sip.model import Response

pytestmark = pytest.mark.interop

UNLISTED = "+8613700137000"
HERE = Path(__file__).resolve().parent


@pytest.fixture
def court_audio() -> bytes:
    return b"\x00\x10" * 8000  # one second: only unlisted numbers are called here


@pytest.fixture
def pki(interop_dir: Path) -> Pki:
    return make_test_pki(interop_dir / "pki")


@pytest.fixture
def tls_node(ringback_cluster: RingbackCluster, pki: Pki) -> tuple[RingbackNode, int]:
    """A ringback node with a TLS listener that requires client certificates of `pki.ca`."""
    tls_port = free_port("tcp")
    node = ringback_cluster.start(
        "ringback-tls",
        sip_toml=(
            f"tls_port = {tls_port}\n"
            f"tls_cert = '{pki.server_cert}'\ntls_key = '{pki.server_key}'\n"
            f"tls_client_ca = '{pki.ca}'\n"
        ),
    )
    return node, tls_port


def client_context(pki: Pki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def invite(ruri: str, local_port: int, branch: str, *, transport: str = "TLS") -> bytes:
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch=z9hG4bK-{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sips:caller@127.0.0.1>;tag={branch}\r\n"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {branch}@tls-test\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sips:caller@127.0.0.1:{local_port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def read_responses(reader: asyncio.StreamReader, count: int) -> list[Response]:
    """`count` SIP responses framed by Content-Length (they carry no body here)."""
    out: list[Response] = []
    while len(out) < count:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        message = parse_message(head)
        assert isinstance(message, Response)
        out.append(message)
    return out


async def test_tls_peer_with_certificate_gets_sips_302_on_its_connection(
    tls_node: tuple[RingbackNode, int], pki: Pki
) -> None:
    node, port = tls_node
    ctx = client_context(pki, pki.client_cert, pki.client_key)
    reader, writer = await asyncio.open_connection(
        LOCALHOST, port, ssl=ctx, server_hostname=LOCALHOST
    )
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    local = writer.get_extra_info("sockname")[1]
    sips = f"sips:{UNLISTED}@127.0.0.1:{port}"
    plain = f"sip:{UNLISTED}@127.0.0.1:{port};transport=tls"
    tel = f"sips:{UNLISTED};phone-context=+86@127.0.0.1:{port};user=phone"
    # three INVITEs in one write (one TLS record or more: framing by Content-Length)
    writer.write(invite(sips, local, "a") + invite(plain, local, "b") + invite(tel, local, "c"))
    await writer.drain()
    responses = await read_responses(reader, 3)
    by_branch = {r.headers.get("Via").split("branch=")[1].split(";")[0]: r for r in responses}
    assert {r.status for r in responses} == {302}
    assert by_branch["z9hG4bK-a"].headers.get("Contact") == f"<{sips};rbk>"
    assert by_branch["z9hG4bK-b"].headers.get("Contact") == f"<{plain};rbk>"
    assert by_branch["z9hG4bK-c"].headers.get("Contact", "").startswith("<sips:")
    for response in responses:
        assert response.headers.get("Via", "").startswith(f"SIP/2.0/TLS 127.0.0.1:{local};")
    # the ACK on the same connection ends the transaction (no retransmission over TLS anyway)
    writer.close()
    metrics = node.metrics()
    assert metrics['ringback_sip_connections_total{transport="tls"}'] == 1
    assert metrics['ringback_sip_requests_total{method="INVITE"}'] == 3


async def tls_refused(port: int, ctx: ssl.SSLContext) -> str:
    """Connect, send an INVITE, read: what happened (the server must never answer SIP)."""
    try:
        reader, writer = await asyncio.open_connection(
            LOCALHOST, port, ssl=ctx, server_hostname=LOCALHOST
        )
    except (ssl.SSLError, ConnectionError) as exc:
        return f"handshake refused: {exc}"
    # TLS 1.3: the client finishes its side before the server checks the certificate; the
    # server's alert arrives on the first read.
    try:
        local = writer.get_extra_info("sockname")[1]
        writer.write(invite(f"sips:{UNLISTED}@127.0.0.1:{port}", local, "refused"))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65535), 10)
    except (ssl.SSLError, ConnectionError) as exc:
        return f"refused after handshake: {exc}"
    finally:
        writer.close()
    assert b"SIP/2.0" not in data, data
    return f"closed with {data!r}"


async def test_peers_without_an_accepted_certificate_are_refused_and_calls_go_on(
    tls_node: tuple[RingbackNode, int], pki: Pki
) -> None:
    node, port = tls_node
    no_cert = await tls_refused(port, client_context(pki, None, None))
    assert "refused" in no_cert or "closed" in no_cert, no_cert
    rogue = await tls_refused(port, client_context(pki, pki.rogue_cert, pki.rogue_key))
    assert "refused" in rogue or "closed" in rogue, rogue
    # a plain-TCP client on the TLS port: no SIP answer, and the connection is closed
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    local = writer.get_extra_info("sockname")[1]
    writer.write(invite(f"sip:{UNLISTED}@127.0.0.1:{port}", local, "plain", transport="TCP"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65535), 10)
    rest = await asyncio.wait_for(reader.read(65535), 10)
    assert rest == b"", "the connection must be closed"
    assert b"SIP/2.0" not in data
    writer.close()
    # none of them reached the SIP layer; a UDP call and a good TLS peer are served meanwhile
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((LOCALHOST, 0))
    udp.settimeout(5)
    udp.sendto(
        invite(
            f"sip:{UNLISTED}@127.0.0.1:{node.sip_port}", udp.getsockname()[1], "u", transport="UDP"
        ),
        (LOCALHOST, node.sip_port),
    )
    assert udp.recv(65535).startswith(b"SIP/2.0 302 ")
    udp.close()
    ctx = client_context(pki, pki.client_cert, pki.client_key)
    reader, writer = await asyncio.open_connection(
        LOCALHOST, port, ssl=ctx, server_hostname=LOCALHOST
    )
    writer.write(invite(f"sips:{UNLISTED}@127.0.0.1:{port}", 5061, "good"))
    (response,) = await read_responses(reader, 1)
    assert response.status == 302
    writer.close()
    metrics = node.metrics()
    assert metrics['ringback_sip_connections_total{transport="tls"}'] == 1  # the good one only
    assert metrics['ringback_sip_requests_total{method="INVITE"}'] == 2  # UDP + the good one


def start_tls_switch(
    processes: ProcessSet,
    workdir: Path,
    pki: Pki,
    ringback_tls: int,
    *,
    client: tuple[Path, Path] | None = None,
) -> KamailioProcess:
    """Kamailio relaying to ringback over TLS with `client` (certificate, key) as its client
    certificate (default: the one signed by the CA ringback trusts)."""
    cert, key = client or (pki.client_cert, pki.client_key)
    cfg = HERE / "kamailio" / "tls_switch.cfg"
    try:
        require_kamailio_modules(cfg)  # the tls module: kamailio-tls-modules (scripts/setup)
    except MissingBinary as exc:
        pytest.fail(str(exc), pytrace=False)
    port = free_port("udp")
    tls_listen = free_port("tcp")
    tls_cfg = workdir / f"kamailio-tls-{port}.cfg"
    tls_cfg.write_text(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
        "require_certificate = no\n"
        f"certificate = {pki.client_cert}\nprivate_key = {pki.client_key}\n\n"
        "[client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n"
        "require_certificate = yes\n"
        f"certificate = {cert}\nprivate_key = {key}\n"
        f"ca_list = {pki.ca}\n"
    )
    defines: dict[str, str | int] = {
        "LISTEN": f"udp:{LOCALHOST}:{port}",
        "TLS_LISTEN": f"tls:{LOCALHOST}:{tls_listen}",
        "RINGBACK": kamailio_string(f"sip:{LOCALHOST}:{ringback_tls};transport=tls"),
        "TLS_CFG": kamailio_string(str(tls_cfg)),
    }
    try:
        return start_kamailio(
            processes, cfg, port=port, workdir=workdir,
            defines=defines,
        )  # fmt: skip
    except PeerFailed as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


def test_kamailio_reaches_ringback_over_tls_with_its_client_certificate(
    tls_node: tuple[RingbackNode, int],
    pki: Pki,
    processes: ProcessSet,
    interop_dir: Path,
    uac: object,
) -> None:
    node, tls_port = tls_node
    switch = start_tls_switch(processes, interop_dir, pki, tls_port)
    calls = 5
    result: SippResult = uac(  # type: ignore[operator]
        "invite_302_sips", (switch.host, switch.port), calls=calls, rate=10, service=UNLISTED
    )
    # every call got its 302 with the Contact <sips:R-URI;rbk> (the scenario checks it exactly)
    result.assert_all_ok(calls)
    metrics = node.metrics()
    assert metrics['ringback_sip_requests_total{method="INVITE"}'] == calls
    # Kamailio held one TLS connection (its client certificate accepted) for every call
    assert metrics['ringback_sip_connections_total{transport="tls"}'] >= 1
    assert metrics.get('ringback_sip_connections_total{transport="tcp"}', 0) == 0


def test_kamailio_with_a_certificate_ringback_does_not_trust_is_refused(
    tls_node: tuple[RingbackNode, int],
    pki: Pki,
    processes: ProcessSet,
    interop_dir: Path,
    uac: object,
) -> None:
    node, tls_port = tls_node
    switch = start_tls_switch(
        processes, interop_dir, pki, tls_port, client=(pki.rogue_cert, pki.rogue_key)
    )
    result: SippResult = uac(  # type: ignore[operator]
        "invite_302_sips", (switch.host, switch.port), calls=1, service=UNLISTED, timeout=20
    )
    # the caller gets Kamailio's own failure, never a 302 from ringback
    assert result.successful == 0 and result.failed == 1, result.describe()
    assert not any(m.status == 302 for m in result.messages), result.describe()
    metrics = node.metrics()
    assert metrics.get('ringback_sip_requests_total{method="INVITE"}', 0) == 0
    assert metrics.get('ringback_sip_connections_total{transport="tls"}', 0) == 0
