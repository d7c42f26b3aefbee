"""The ``xmppbridge`` command: run the bridge, check configs, validate, sign, verify, publish."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from xmppbridge.config import load_config
from xmppbridge.errors import BridgeError, InputRejected

EXIT_OK, EXIT_INVALID, EXIT_ERROR = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or EXIT_OK)
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmppbridge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, func: object, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        return sub

    sub = command("run", cmd_run, "run the bridge until interrupted")
    sub.add_argument("-c", "--config", required=True, type=Path)

    sub = command("check-config", cmd_check_config, "load and check a config file, then exit")
    sub.add_argument("-c", "--config", required=True, type=Path)

    sub = command("validate", cmd_validate, "validate IODEF documents against the official XSD")
    sub.add_argument("files", nargs="+", type=Path)
    sub.add_argument("--json", action="store_true", help="one JSON object per file per line")
    sub.add_argument("--prefix", default="iodef", help="node prefix for the 'node' field (default iodef)")
    sub.add_argument("--schema-mode", choices=("strict", "warn"), default="strict")

    sub = command("sign", cmd_sign, "sign an IODEF document (enveloped XML signature)")
    sub.add_argument("--key", required=True, type=Path, help="PEM private key (RSA 2048+ or EC P-256+)")
    sub.add_argument("--cert", required=True, type=Path, help="PEM certificate for the key")
    sub.add_argument("input", type=Path)
    sub.add_argument("-o", "--output", type=Path, help="default: standard output")

    sub = command("verify", cmd_verify, "verify a signed IODEF document against trusted certificates")
    sub.add_argument("--trust", required=True, type=Path, action="append",
                     help="PEM file or directory of trusted signer certificates (repeatable)")
    sub.add_argument("input", type=Path)

    sub = command("publish", cmd_publish, "hand documents to the running bridge and wait until published")
    sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("files", nargs="+", type=Path)
    sub.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per document (default 60)")

    sub = command("rejects", cmd_rejects, "list received items that were rejected, with their reasons")
    sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("--limit", type=int, default=50)

    sub = command("demo", cmd_demo, "run a two-domain consortium on loopback (what `make demo` runs)")
    sub.add_argument("--workdir", type=Path, default=Path("var/demo"))
    sub.add_argument("--addresses", default="127.0.0.2,127.0.0.3",
                     help="loopback addresses of a.test and b.test (default 127.0.0.2,127.0.0.3)")
    sub.add_argument("--feed-port", type=int, default=8081, help="A's feed port; B's is the next one")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from xmppbridge.bridge import Bridge

    config = load_config(args.config)

    async def main() -> None:
        bridge = Bridge(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, bridge.stop)
        await bridge.run()

    asyncio.run(main())
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from xmppbridge.signing.keys import load_identity
    from xmppbridge.signing.verify import TrustStore

    config = load_config(args.config)
    load_identity(config.signing_key, config.signing_cert)
    trust = TrustStore.from_paths(list(config.trust_anchors))
    print(f"{args.config}: OK: {config.jid} publishes to {config.pubsub_service} under "
          f"'{config.node_prefix}/', {len(trust)} trusted signer(s), "
          f"{len(config.subscriptions)} subscription(s), feed {config.feed_base_url}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from xmppbridge.iodef.document import read_document
    from xmppbridge.policy import node_name

    all_valid = True
    for file in args.files:
        result: dict[str, object] = {"file": str(file), "valid": False, "version": None, "errors": [],
                                     "incidents": []}
        try:
            document = read_document(file.read_bytes(), schema_mode=args.schema_mode)
        except OSError as exc:
            result["errors"] = [f"cannot read: {exc.strerror}"]
        except InputRejected as exc:
            result["errors"] = [f"{exc.reason}: {exc}", *exc.details]
            result["version"] = getattr(exc, "version", None)
        else:
            result.update(valid=True, version=document.version, errors=document.schema_errors, incidents=[
                {"id_name": i.id_name, "id": i.id, "restriction": i.restriction_raw, "purpose": i.purpose,
                 "node": node_name(args.prefix, i.effective_restriction, i.purpose)}
                for i in document.incidents
            ])
        all_valid &= bool(result["valid"])
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            state = "valid" if result["valid"] else "INVALID"
            print(f"{file}: {state} (IODEF {result['version'] or '?'})")
            for error in result["errors"]:  # type: ignore[union-attr]
                print(f"  {error}")
            for incident in result["incidents"]:  # type: ignore[union-attr]
                print(f"  incident {incident['id_name']}:{incident['id']} -> {incident['node']}")
    return EXIT_OK if all_valid else EXIT_INVALID


def cmd_sign(args: argparse.Namespace) -> int:
    from xmppbridge.iodef.document import read_document
    from xmppbridge.signing.keys import load_identity
    from xmppbridge.signing.sign import sign_document

    identity = load_identity(args.key, args.cert)
    try:
        document = read_document(args.input.read_bytes())
    except InputRejected as exc:
        print(f"{args.input}: not signed: {exc.reason}: {exc}", file=sys.stderr)
        for detail in exc.details:
            print(f"  {detail}", file=sys.stderr)
        return EXIT_INVALID
    signed = sign_document(document.root, identity)
    if args.output:
        args.output.write_bytes(signed)
    else:
        sys.stdout.buffer.write(signed)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from xmppbridge.signing.verify import TrustStore, verify_document

    trust = TrustStore.from_paths(args.trust)
    try:
        verified = verify_document(args.input.read_bytes(), trust)
    except InputRejected as exc:
        print(f"{args.input}: INVALID: {exc.reason}: {exc}")
        return EXIT_INVALID
    print(f"{args.input}: valid signature by {verified.signer_subject} "
          f"(SHA-256 {verified.signer_fingerprint})")
    return EXIT_OK


def cmd_publish(args: argparse.Namespace) -> int:
    from xmppbridge.publish import Publisher
    from xmppbridge.signing.keys import load_identity
    from xmppbridge.store import Store

    config = load_config(args.config)
    store = Store(config.store_path)
    publisher = Publisher(store, load_identity(config.signing_key, config.signing_cert),
                          prefix=config.node_prefix, max_bytes=config.max_document_bytes,
                          schema_mode=config.schema_mode)
    exit_code = EXIT_OK
    try:
        for file in args.files:
            try:
                # Committed to the outbox before we report anything: the bridge publishes it even if
                # this command is interrupted now.
                accepted = publisher.submit(file.read_bytes(), source=f"cli:{file}")
            except OSError as exc:
                print(f"{file}: cannot read: {exc.strerror}", file=sys.stderr)
                exit_code = EXIT_INVALID
                continue
            except InputRejected as exc:
                print(f"{file}: rejected: {exc.reason}: {exc}", file=sys.stderr)
                for detail in exc.details[:20]:
                    print(f"  {detail}", file=sys.stderr)
                exit_code = EXIT_INVALID
                continue
            for each in accepted:
                outcome = publisher.wait(each.outbox_id, args.timeout)
                if outcome is None:
                    print(f"{file}: queued in the outbox of {config.store_path} but not published within "
                          f"{args.timeout:.0f} s; is the bridge running (xmppbridge run -c {config.file})? "
                          "It will publish it when it runs.", file=sys.stderr)
                    exit_code = EXIT_INVALID
                elif outcome.status == "failed":
                    print(f"{file}: not published: {outcome.reason}", file=sys.stderr)
                    exit_code = EXIT_INVALID
                else:
                    print(f"{file}: published to {each.item.node} on {config.pubsub_service} "
                          f"as item {each.item.item_id}")
    finally:
        store.close()
    return exit_code


def cmd_rejects(args: argparse.Namespace) -> int:
    from xmppbridge.store import Store

    store = Store(load_config(args.config).store_path)
    try:
        for reject in store.rejects(limit=args.limit):
            print(f"{reject.received_at:%Y-%m-%dT%H:%M:%SZ} {reject.service}/{reject.node} "
                  f"item {reject.item_id}: {reject.reason}: {reject.message.splitlines()[0]}")
    finally:
        store.close()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from xmppbridge.demo.run import run_demo

    a, _, b = args.addresses.partition(",")
    return run_demo(args.workdir, addresses=(a, b), feed_port=args.feed_port)


if __name__ == "__main__":
    sys.exit(main())
