"""Exception classes. Messages are written for the operator: they say what is wrong and what to do."""


class BridgeError(Exception):
    """Base class for every error xmppbridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration file is unusable; the message names the file, the key and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


class InputRejected(BridgeError):
    """An IODEF document (file, pubsub item, HTTP body) was refused. ``reason`` is a short stable code
    (``malformed-xml``, ``doctype-forbidden``, ``too-large``, ``wrong-namespace``, ``schema-invalid``,
    ``bad-signature``, ``unknown-signer``, ...) and the message explains it."""

    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None, details: list[str] | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason
        self.details = details or []


class UnsafeXML(InputRejected):
    reason = "unsafe-xml"


class MalformedXML(InputRejected):
    reason = "malformed-xml"


class TooLarge(InputRejected):
    reason = "too-large"


class NotIodef(InputRejected):
    reason = "wrong-namespace"


class SchemaInvalid(InputRejected):
    reason = "schema-invalid"


class SignatureRejected(InputRejected):
    reason = "bad-signature"


class UnknownSigner(SignatureRejected):
    reason = "unknown-signer"


class SignerUnusable(InputRejected):
    """Our own signing certificate is one every peer refuses (``certificate-expired``, ``weak-key``, ...):
    a document signed with it is refused at publish, whatever it says. The fault is the server's, not the
    document's (AtomPub answers 503, not 400)."""


class PublishFailed(BridgeError):
    """An XMPP server refused or did not answer one of our pubsub requests (a publish, an item fetch).
    ``transient`` failures (timeouts, lost connection) are retried from the outbox; a refusal is
    recorded on the outbox item. ``condition`` and ``text`` are the stanza error's (RFC 6120 §8.3.3),
    or ``timeout`` when no answer came; None when neither applies."""

    def __init__(self, message: str, *, transient: bool = False, condition: str | None = None,
                 text: str = "") -> None:
        super().__init__(message)
        self.transient = transient
        self.condition, self.text = condition, text
