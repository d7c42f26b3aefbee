"""TLS for the feed server: the server's certificate, and optionally client certificates.

RFC 8322 §5.3 asks for TLS 1.2 or later; §5.4 for client-certificate authentication. Clients without a
certificate are still served (CERT_OPTIONAL) and fall back to Basic/Bearer or anonymous access; a
certificate that does not verify against ``client_ca`` ends the handshake.
"""

from __future__ import annotations

import ssl

from xmppbridge.feed.settings import TlsSettings


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cafile=str(tls.client_ca))
    return context
