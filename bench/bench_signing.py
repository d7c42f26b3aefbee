"""Sign and verify a typical (3 KB) and a large (500 KB) IODEF document: ours (signxml, wire form) vs
libxmlsec1 in process (python `xmlsec`) vs the `xmlsec1` CLI verifying a batch of files in one call.

Each figure is the median of 3 runs' per-document medians. Ours and libxmlsec1 are timed alternately,
operation by operation, so that load from other processes on a shared machine weighs on both alike (the
ratio is the figure to read). Target (BENCHMARKS.md): ours <= 1.25x libxmlsec1 for sign and verify.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import xmlsec
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RUNS, large_document, ms, table, typical_document  # noqa: E402
from xmppbridge.signing.keys import generate_identity_files, load_identity  # noqa: E402
from xmppbridge.signing.sign import sign_document  # noqa: E402
from xmppbridge.signing.verify import TrustStore, verify_document  # noqa: E402

DS = "http://www.w3.org/2000/09/xmldsig#"
IODEF2 = "urn:ietf:params:xml:ns:iodef-2.0"
CLI_BATCH = 200


def xmlsec_template(document: bytes, kind: str) -> etree._Element:
    """The same placement ours uses, as a template python-xmlsec / xmlsec1 fill in."""
    root = etree.fromstring(document)
    holder = etree.SubElement(root, f"{{{IODEF2}}}AdditionalData", dtype="xml", meaning="signature")
    method = xmlsec.Transform.RSA_SHA256 if kind == "rsa" else xmlsec.Transform.ECDSA_SHA256
    signature = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, method)
    holder.append(signature)
    ref = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri="")
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    return root


def paired(ours: Callable[[], object], theirs: Callable[[], object], ops: int) -> tuple[float, float]:
    """Median seconds per call of each, over RUNS runs of ``ops`` alternating calls."""
    ours_runs, theirs_runs = [], []
    for _ in range(RUNS):
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(ops):
            for operation, sink in ((ours, times[0]), (theirs, times[1])):
                start = time.perf_counter()
                operation()
                sink.append(time.perf_counter() - start)
        ours_runs.append(statistics.median(times[0]))
        theirs_runs.append(statistics.median(times[1]))
    return statistics.median(ours_runs), statistics.median(theirs_runs)


def measure(kind: str, label: str, document: bytes, ops: int, work: Path) -> list[str]:
    key_path, cert_path = work / f"{kind}.key", work / f"{kind}.crt"
    if not key_path.exists():
        generate_identity_files(f"bench {kind}", key_path, cert_path, kind=kind)
    identity = load_identity(key_path, cert_path)
    trust = TrustStore.from_paths([cert_path])
    key = xmlsec.Key.from_file(str(key_path), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_file(str(cert_path), xmlsec.constants.KeyDataFormatPem)
    # Verification pinned to the signer's certificate, as ours is (trust store of pinned certs).
    pinned = xmlsec.Key.from_file(str(cert_path), xmlsec.constants.KeyDataFormatCertPem)
    root = etree.fromstring(document)
    template = etree.tostring(xmlsec_template(document, kind))

    def theirs_sign() -> bytes:
        copy = etree.fromstring(template)
        context = xmlsec.SignatureContext()
        context.key = key
        context.sign(copy.find(f".//{{{DS}}}Signature"))
        return etree.tostring(copy)

    ours_signed = sign_document(root, identity)
    theirs_signed = theirs_sign()

    def theirs_verify() -> None:
        parsed = etree.fromstring(theirs_signed)
        context = xmlsec.SignatureContext()
        context.key = pinned
        context.verify(parsed.find(f".//{{{DS}}}Signature"))

    ours_s, theirs_s = paired(lambda: sign_document(root, identity), theirs_sign, ops)
    ours_v, theirs_v = paired(lambda: verify_document(ours_signed, trust, max_bytes=10_000_000),
                              theirs_verify, ops)

    batch = [work / f"{kind}-{label.replace(' ', '')}-{i}.xml" for i in range(CLI_BATCH if ops > 10 else 20)]
    for path in batch:
        path.write_bytes(ours_signed)
    cli_runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(cert_path), *map(str, batch)],
                       check=True, capture_output=True)
        cli_runs.append((time.perf_counter() - start) / len(batch))
    cli_v = sorted(cli_runs)[1]
    return [kind.upper(), label, ms(ours_s), ms(theirs_s), f"{ours_s / theirs_s:.2f}",
            ms(ours_v), ms(theirs_v), f"{ours_v / theirs_v:.2f}", ms(cli_v)]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-sign-"))
    documents = (("3 KB", typical_document(), 300), ("500 KB", large_document(), 15))
    rows = [measure(kind, label, document, ops, work)
            for kind in ("rsa", "ec") for label, document, ops in documents]
    print("Sign/verify, ms per document (median of 3 runs); ratio = ours / libxmlsec1 in process")
    print(table(rows, ["key", "doc", "ours sign", "xmlsec sign", "ratio", "ours verify", "xmlsec verify",
                       "ratio", "xmlsec1 CLI verify (batch)"]))


if __name__ == "__main__":
    main()
