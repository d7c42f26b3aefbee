"""xmppbridge: IODEF incident reports over XMPP PubSub, signed, verified and mirrored to a ROLIE feed.

The package reads as the data flow: ``iodef`` (parse, validate, classify) -> ``signing`` (wire form,
sign, verify) -> ``xmpp`` (component shell) -> ``store`` (SQLite) -> ``feed`` (Atom rendering and the
HTTP shell). ``policy`` decides node names and access; ``bridge`` wires the shells to the core.
"""

__version__ = "0.1.0"
