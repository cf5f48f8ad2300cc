"""The server TLS context of SIP over TLS (RFC 3261 §26, `sip.tls_*`).

TLS 1.2 or newer with the forward-secret AEAD suites the HTTPS side uses. With a CA file
(`sip.tls_client_ca`), every peer must present a certificate that chains to it (mutual
TLS, as carrier interconnects usually require); a peer without one fails the handshake and
never reaches the SIP layer.
"""

from __future__ import annotations

import ssl

from ringback.api.tls import TLS12_CIPHERS


def sip_tls_context(cert_file: str, key_file: str, client_ca: str = "") -> ssl.SSLContext:
    """Raises OSError or ssl.SSLError when a file cannot be loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
