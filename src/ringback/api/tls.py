"""HTTPS served directly (`http.tls_cert` / `http.tls_key`): TLS 1.2 or newer, forward-secret
AEAD cipher suites only, HTTP/1.1 (keep-alive is aiohttp's default)."""

from __future__ import annotations

import ssl

# TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (Mozilla's
# "intermediate" list). TLS 1.3 suites are all AEAD and are left at OpenSSL's defaults.
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context for `cert_file` (PEM chain) and `key_file`; raises OSError or
    ssl.SSLError when they cannot be loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
