"""The ``xmppbridge`` command: run the bridge, serve its feed, check configs, validate, sign, verify,
publish."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xmppbridge.config.settings import load_config
from xmppbridge.demo.topology import TOPOLOGIES, Shape
from xmppbridge.errors import BridgeError, InputRejected

if TYPE_CHECKING:
    from xmppbridge.store import Store

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

    what = ("serve the feed alone from the shared store, without XMPP: every read, and AtomPub writes into "
            "the outbox the running bridge drains; any number of these may run")
    sub = command("serve-feed", cmd_serve_feed, what)
    sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("--listen", metavar="HOST:PORT",
                     help="listen here instead of feed.listen (links still start at feed.base_url)")
    sub.add_argument("--operator-listen", metavar="HOST:PORT",
                     help="this process's operator listener instead of metrics.listen (loopback), or 'none'")
    sub.add_argument("--reuse-port", action="store_true",
                     help="share the feed's port with the other serve-feed processes on this machine "
                          "(SO_REUSEPORT: the kernel spreads the connections)")

    sub = command("check-config", cmd_check_config, "load and check a config file, then exit")
    sub.add_argument("-c", "--config", required=True, type=Path)

    what = "rewrite a config's trust anchors, subscriptions and whitelist as a member registry"
    config_actions = commands.add_parser("config", help="config file tools").add_subparsers(
        required=True, metavar="ACTION")
    sub = config_actions.add_parser(
        "upgrade", help=what, description=what + " (members: and audiences:); prints the new config, or "
        "with --write replaces the file and keeps a .bak")
    sub.set_defaults(func=cmd_config_upgrade)
    sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("--write", action="store_true", help="replace the file (the old one stays as FILE.bak)")

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

    what = ("make a new signing key and self-signed certificate (a member joining, or rotating its key: "
            "hand the certificate to the other members for their registries)")
    sub = command("keygen", cmd_keygen, what)
    sub.add_argument("--key", required=True, type=Path, help="where to write the PEM private key (mode 0600)")
    sub.add_argument("--cert", required=True, type=Path, help="where to write the PEM certificate")
    sub.add_argument("--domain", required=True, action="append", dest="domains", metavar="DOMAIN",
                     help="an IncidentID domain the member speaks for (repeatable): the subjectAltName")
    sub.add_argument("--name", help="the certificate's common name (default: 'CSIRT signing key (DOMAIN)')")
    sub.add_argument("--type", choices=("rsa", "ec"), default="rsa", help="RSA 2048 or EC P-256")
    sub.add_argument("--days", type=int, default=365, help="validity (default 365)")

    sub = command("verify", cmd_verify, "verify a signed IODEF document against trusted certificates")
    sub.add_argument("--trust", type=Path, action="append", default=[],
                     help="PEM file or directory of trusted signer certificates (repeatable)")
    sub.add_argument("--ca", type=Path, action="append", default=[],
                     help="PEM file of a consortium CA whose member certificates are trusted (repeatable)")
    sub.add_argument("--crl", type=Path, action="append", default=[], help="CRL of such a CA (repeatable)")
    sub.add_argument("input", type=Path)

    sub = command("publish", cmd_publish, "hand documents to the running bridge and wait until published")
    sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("files", nargs="+", type=Path)
    sub.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per document (default 60)")

    sub = command("rejects", cmd_quarantine_list, "list quarantined items (same as `quarantine list`)")
    _quarantine_list_arguments(sub)

    what = "inspect, release or purge received items that were refused"
    actions = commands.add_parser("quarantine", help=what, description=what).add_subparsers(
        required=True, metavar="ACTION")

    def action(name: str, func: object, help: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help, description=help)
        parser.set_defaults(func=func)
        parser.add_argument("-c", "--config", required=True, type=Path)
        return parser

    _quarantine_list_arguments(action("list", cmd_quarantine_list, "list held items, newest first"),
                               config=False)
    sub = action("show", cmd_quarantine_show, "show one item: its source, why it was refused, its bytes")
    sub.add_argument("id", type=int)
    sub.add_argument("--raw", action="store_true", help="write only the raw bytes as received")
    sub = action("release", cmd_quarantine_release,
                 "verify items again with the current config and mirror what now passes")
    sub.add_argument("ids", type=int, nargs="*", metavar="ID")
    sub.add_argument("--all", action="store_true", help="every held item")
    sub.add_argument("--reason", help="every held item refused for this reason (e.g. unknown-signer)")
    sub = action("purge", cmd_quarantine_purge, "delete items from the quarantine")
    sub.add_argument("ids", type=int, nargs="*", metavar="ID")
    sub.add_argument("--older-than", metavar="AGE", help="received more than AGE ago, e.g. 30d, 12h, 2w")
    sub.add_argument("--released", action="store_true", help="only items already released")

    what = "subscription requests held for approval (pubsub.approval), and the members' registry"
    members = commands.add_parser("members", help=what, description=what).add_subparsers(
        required=True, metavar="ACTION")
    for name, func, help in (("pending", cmd_members_pending, "requests waiting for a decision"),
                             ("list", cmd_members_list, "the registry's members and every request")):
        sub = members.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        sub.add_argument("-c", "--config", required=True, type=Path)
    for name, approve in (("approve", True), ("deny", False)):
        help = f"{name} a bridge's subscription to one of our nodes; the running bridge sends it"
        sub = members.add_parser(name, help=help, description=help)
        sub.set_defaults(func=cmd_members_decide, approve=approve)
        sub.add_argument("-c", "--config", required=True, type=Path)
        sub.add_argument("node")
        sub.add_argument("jid", help="the subscribing bridge's JID")
        sub.add_argument("--timeout", type=float, default=15.0,
                         help="seconds to wait for the bridge to send it (default 15)")

    what = "store tools"
    store_actions = commands.add_parser("store", help=what, description=what).add_subparsers(
        required=True, metavar="ACTION")
    what = ("copy a whole store to another backend (an SQLite file to a PostgreSQL database, or back): "
            "history, quarantine, outbox and chat state, then compare every table's rows; stop the bridge "
            "first; the target must be empty")
    sub = store_actions.add_parser("copy", help=what, description=what)
    sub.set_defaults(func=cmd_store_copy)
    sub.add_argument("--from", dest="source", required=True, metavar="STORE",
                     help="the store.path of an SQLite file, or a postgresql:// URL")
    sub.add_argument("--to", dest="target", required=True, metavar="STORE",
                     help="the new store: an SQLite path or a postgresql:// URL (what store.url becomes)")

    sub = command("status", cmd_status, "connection, outbox, quarantine and peers of a bridge")
    sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object")

    sub = command("doctor", cmd_doctor, "check a deployment live: component, pubsub rights, peers over s2s, "
                                        "keys, trust, feed; exit 1 if anything fails")
    sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("--json", action="store_true", help="print the report as one JSON object")
    sub.add_argument("--timeout", type=float, default=10.0, help="seconds per network step (default 10)")

    sub = command("demo", cmd_demo, "run a consortium on loopback: two domains (what `make demo` runs) "
                                    "or --members N")
    sub.add_argument("--workdir", type=Path, default=Path("var/demo"))
    sub.add_argument("--members", type=int, default=2,
                     help="number of member domains, a.test, b.test, ... (2 to 16, default 2); with more "
                          "than 2 every member publishes the samples")
    sub.add_argument("--topology", default="mesh", choices=TOPOLOGIES,
                     help="who subscribes to whom: mesh (every member to every other; the default), "
                          "hub (the hub follows every other member and relays what each publishes to the "
                          "rest, which follow the hub alone; 3 members at least), tree (two hubs, a and "
                          "b, each with half the other members as its spokes, relaying to each other and "
                          "to their spokes; 4 members at least) or ring (hubs a, b, c, ... on a ring, "
                          "each with its share of the spokes, relaying to its two neighbours; twice "
                          "--hubs members at least)")
    sub.add_argument("--hub", metavar="MEMBER",
                     help="with --topology hub: the coordinator, a member's letter (default a)")
    sub.add_argument("--hubs", type=int, metavar="K",
                     help="with --topology ring: how many hubs (3 or more, default 3)")
    sub.add_argument("--servers", default="prosody",
                     help="XMPP server software, dealt round-robin: prosody,ejabberd puts a on Prosody, b "
                          "on ejabberd, c on Prosody, ... (default prosody)")
    sub.add_argument("--addresses",
                     help="comma-separated loopback addresses, one per member (default 127.0.0.2 and "
                          "127.0.0.3 for a and b, 127.0.0.240 on for the others)")
    sub.add_argument("--feed-port", type=int, default=8081,
                     help="A's feed port; B's is the next one, and so on")
    sub.add_argument("--restart", metavar="PART",
                     help="start one part of the running demo in --workdir again (server-a, bridge-a, "
                          "server-b, bridge-b, ...), in the background; the demo prints this when a part "
                          "dies")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from xmppbridge.process.logs import configure_logging
    from xmppbridge.process.run import Bridge

    config = load_config(args.config)
    configure_logging(level=logging.DEBUG if args.verbose else logging.INFO,
                      json_lines=config.operators.log_format == "json")

    async def main() -> None:
        bridge = Bridge(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, bridge.stop)
        loop.add_signal_handler(signal.SIGHUP, bridge.reload)
        await bridge.run()

    asyncio.run(main())
    return EXIT_OK


def cmd_serve_feed(args: argparse.Namespace) -> int:
    from xmppbridge.process.logs import configure_logging
    from xmppbridge.process.servefeed import FeedProcess

    config = load_config(args.config)
    overrides: dict[str, object] = {}
    if args.listen is not None:
        # Every process must write the same links, whatever address it listens on.
        overrides.update({"feed.listen": args.listen, "feed.base_url": config.feed_base_url})
    if args.operator_listen is not None:
        overrides["metrics.listen"] = None if args.operator_listen == "none" else args.operator_listen
    if overrides:  # checked as if they were in the file: e.g. no anonymous non-public reads off loopback
        config = load_config(args.config, overrides=overrides)
    configure_logging(level=logging.DEBUG if args.verbose else logging.INFO,
                      json_lines=config.operators.log_format == "json")

    async def main() -> None:
        process = FeedProcess(config, overrides=overrides, reuse_port=args.reuse_port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, process.stop)
        loop.add_signal_handler(signal.SIGHUP, process.reload)
        await process.run()

    asyncio.run(main())
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from xmppbridge.paths.publish import speaks_for
    from xmppbridge.signing.keys import load_identity

    config = load_config(args.config)  # loads and checks the trust section too
    identity = load_identity(config.signing_key, config.signing_cert)
    trust = config.trust
    # The domains the peers must let this signer speak for (subjectAltName, or their trust.domains).
    domains = ", ".join(speaks_for(identity, config.signing_domains)) or "no IncidentID domain"
    print(f"{args.config}: OK: {config.jid} publishes to {config.pubsub_service} under "
          f"'{config.node_prefix}/' for {domains}, {len(trust)} pinned signer(s), "
          f"{len(trust.authorities)} CA(s), "
          f"{len(trust.crls)} CRL(s), {len(config.subscriptions)} subscription(s), "
          f"{len(config.registry.peers())} member(s) besides us, feed {config.feed_base_url}")
    return EXIT_OK


def cmd_config_upgrade(args: argparse.Namespace) -> int:
    import yaml

    from xmppbridge.config.upgrade import UpgradeError, same_bridge, upgrade

    config = load_config(args.config)
    try:
        result = upgrade(config, yaml.safe_load(args.config.read_text(encoding="utf-8")))
    except UpgradeError as exc:
        print(f"error: {args.config}: cannot upgrade: {exc}", file=sys.stderr)
        return EXIT_ERROR
    text = (f"# Upgraded by xmppbridge config upgrade from {args.config.name}: the member registry.\n"
            + yaml.safe_dump(result.data, sort_keys=False))
    # Loaded from beside the old file, so that relative paths mean the same.
    trial = args.config.with_name(f".{args.config.name}.upgrade")
    trial.write_text(text, encoding="utf-8")
    try:
        problems = same_bridge(config, load_config(trial))
    finally:
        trial.unlink()
    if problems:
        print(f"error: {args.config}: the upgraded config would not be the same bridge: "
              + "; ".join(problems), file=sys.stderr)
        return EXIT_ERROR
    for note in result.notes:
        print(f"upgrade: {note}", file=sys.stderr)
    if not args.write:
        print(text, end="")
        return EXIT_OK
    backup = args.config.with_name(args.config.name + ".bak")
    backup.write_text(args.config.read_text(encoding="utf-8"), encoding="utf-8")
    args.config.write_text(text, encoding="utf-8")
    print(f"{args.config}: upgraded (the old config is {backup})", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from xmppbridge.iodef.document import read_document
    from xmppbridge.policy.nodes import node_name

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


def cmd_keygen(args: argparse.Namespace) -> int:
    from xmppbridge.signing.keys import fingerprint, generate_identity_files

    name = args.name or f"CSIRT signing key ({', '.join(args.domains)})"
    # Refuses to replace existing files: members that pinned the old certificate would refuse the new key.
    identity = generate_identity_files(name, args.key, args.cert, kind=args.type, days=args.days,
                                       domains=tuple(args.domains))
    print(f"{args.cert}: {name}, SHA-256 {fingerprint(identity.certificate)}; key in {args.key}")
    return EXIT_OK


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
    from dataclasses import replace

    from xmppbridge.signing.certfiles import load_certificates, load_crl
    from xmppbridge.signing.verify import TrustStore, verify_document

    if not args.trust and not args.ca:
        print("error: give --trust (pinned certificates) and/or --ca (consortium CA)", file=sys.stderr)
        return EXIT_ERROR
    trust = replace(TrustStore.from_paths(args.trust),
                    authorities=tuple(c for path in args.ca for c in load_certificates(path, "--ca")),
                    crls=tuple(load_crl(path, "--crl") for path in args.crl))
    try:
        verified = verify_document(args.input.read_bytes(), trust)
    except InputRejected as exc:
        print(f"{args.input}: INVALID: {exc.reason}: {exc}")
        return EXIT_INVALID
    print(f"{args.input}: valid signature by {verified.signer_subject} "
          f"(SHA-256 {verified.signer_fingerprint})")
    for relay in verified.relays:
        print(f"  relayed by {relay.subject} (SHA-256 {relay.fingerprint})")
    return EXIT_OK


def cmd_publish(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from xmppbridge.paths.publish import Publisher
    from xmppbridge.store import Store

    config = load_config(args.config)
    store = Store(config.store_target)
    publisher = Publisher.for_config(store, config)
    exit_code = EXIT_OK
    # A progress bar on a terminal when there are several files (tqdm hides itself elsewhere, e.g. in
    # scripts and CI); per-file lines go through tqdm.write so that they do not tear the bar.
    files = tqdm(args.files, desc="publishing", unit="file",
                 disable=None if len(args.files) > 1 else True)
    try:
        for file in files:
            try:
                # Committed to the outbox before we report anything: the bridge publishes it even if
                # this command is interrupted now.
                accepted = publisher.submit(file.read_bytes(), source=f"cli:{file}")
            except OSError as exc:
                tqdm.write(f"{file}: cannot read: {exc.strerror}", file=sys.stderr)
                exit_code = EXIT_INVALID
                continue
            except InputRejected as exc:
                tqdm.write(f"{file}: rejected: {exc.reason}: {exc}", file=sys.stderr)
                for detail in exc.details[:20]:
                    tqdm.write(f"  {detail}", file=sys.stderr)
                exit_code = EXIT_INVALID
                continue
            for each in accepted:
                outcome = publisher.wait(each.outbox_id, args.timeout)
                if outcome is None:
                    tqdm.write(f"{file}: queued in the outbox of {config.store_target} but not published "
                               f"within {args.timeout:.0f} s; is the bridge running (xmppbridge run -c "
                               f"{config.file})? It will publish it when it runs.", file=sys.stderr)
                    exit_code = EXIT_INVALID
                elif outcome.status == "failed":
                    tqdm.write(f"{file}: not published: {outcome.reason}", file=sys.stderr)
                    exit_code = EXIT_INVALID
                else:
                    tqdm.write(f"{file}: published to {each.item.node} on {config.pubsub_service} "
                               f"as item {each.item.item_id}", file=sys.stdout)
    finally:
        files.close()
        store.close()
    return exit_code


def _quarantine_list_arguments(sub: argparse.ArgumentParser, *, config: bool = True) -> None:
    if config:
        sub.add_argument("-c", "--config", required=True, type=Path)
    sub.add_argument("--limit", type=int, default=50)
    sub.add_argument("--all", action="store_true", help="include items already released")
    sub.add_argument("--reason", help="only items refused for this reason")


def _open_store(args: argparse.Namespace) -> Store:
    from xmppbridge.store import Store

    return Store(load_config(args.config).store_target)


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        for record in store.rejects(limit=args.limit, held_only=not args.all, reason=args.reason):
            seen = f" (seen {record.seen_count}x)" if record.seen_count > 1 else ""
            state = "" if record.held else f" [released: {record.resolution}]"
            print(f"{record.id} {record.received_at:%Y-%m-%dT%H:%M:%SZ} {record.source} "
                  f"{record.service}/{record.node} item {record.item_id}: {record.reason}: "
                  f"{record.message.splitlines()[0] if record.message else ''}{seen}{state}")
    return EXIT_OK


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        record = store.reject(args.id)
    if record is None:
        print(f"error: no quarantined item {args.id}", file=sys.stderr)
        return EXIT_INVALID
    if args.raw:
        sys.stdout.buffer.write(record.raw)
        return EXIT_OK
    last_seen = record.last_seen_at or record.received_at
    for label, value in (
        ("id", record.id), ("source", record.source), ("service", record.service), ("node", record.node),
        ("item", record.item_id), ("received", f"{record.received_at:%Y-%m-%dT%H:%M:%SZ}"),
        ("last seen", f"{last_seen:%Y-%m-%dT%H:%M:%SZ} ({record.seen_count} time(s))"),
        ("state", "held" if record.held else f"released {record.released_at:%Y-%m-%dT%H:%M:%SZ}: "
                                              f"{record.resolution}"),
        ("reason", record.reason), ("size", f"{record.raw_size} bytes"),
    ):
        print(f"{label + ':':10} {value}")
    print(f"\n{record.message}\n")
    print(record.raw.decode("utf-8", errors="replace"))
    return EXIT_OK


def cmd_quarantine_release(args: argparse.Namespace) -> int:
    from xmppbridge.ops.quarantine import held, release
    from xmppbridge.store import Store

    if bool(args.ids) + args.all + (args.reason is not None) != 1:
        print("error: give item IDs, --all or --reason REASON", file=sys.stderr)
        return EXIT_ERROR
    config = load_config(args.config)
    with Store(config.store_target) as store:
        if args.ids:
            records = [store.reject(i) for i in args.ids]
            missing = [i for i, r in zip(args.ids, records, strict=True) if r is None]
            if missing:
                print(f"error: no quarantined item {', '.join(map(str, missing))}", file=sys.stderr)
                return EXIT_INVALID
        else:
            records = held(store, reason=args.reason)
        results = release(store, config.trust, [r for r in records if r is not None],
                          max_bytes=config.max_document_bytes, follows=config.sources.follows,
                          schema_mode=config.schema_mode)
    for result in results:
        state = "released" if result.released else "still held"
        record = result.record
        print(f"{record.id} {record.service}/{record.node} item {record.item_id}: {state}: {result.outcome}")
    return EXIT_OK if all(r.released for r in results) else EXIT_INVALID


def cmd_quarantine_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from xmppbridge.ops.quarantine import parse_age

    if not (args.ids or args.older_than or args.released):
        print("error: give item IDs, --older-than AGE and/or --released", file=sys.stderr)
        return EXIT_ERROR
    try:
        before = datetime.now(UTC) - parse_age(args.older_than) if args.older_than else None
    except ValueError as exc:
        print(f"error: --older-than: {exc}", file=sys.stderr)
        return EXIT_ERROR
    with _open_store(args) as store:
        count = store.purge_rejects(ids=args.ids or None, before=before, released_only=args.released)
    print(f"purged {count} item(s) from the quarantine")
    return EXIT_OK


def cmd_members_pending(args: argparse.Namespace) -> int:
    from xmppbridge.ops.members import pending_lines

    with _open_store(args) as store:
        print("\n".join(pending_lines(store)))
    return EXIT_OK


def cmd_members_list(args: argparse.Namespace) -> int:
    from xmppbridge.ops.members import list_lines
    from xmppbridge.store import Store

    config = load_config(args.config)
    with Store(config.store_target) as store:
        print("\n".join(list_lines(config, store)))
    return EXIT_OK


def cmd_members_decide(args: argparse.Namespace) -> int:
    from xmppbridge.ops.members import decide

    with _open_store(args) as store:
        ok, message = decide(store, args.node, args.jid, args.approve, timeout=args.timeout)
    print(message, file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_INVALID


def cmd_store_copy(args: argparse.Namespace) -> int:
    from xmppbridge.store import Store
    from xmppbridge.store.copy import CopyError, copy_store
    from xmppbridge.store.sessions import is_url
    from xmppbridge.store.sql import redact

    if not is_url(args.source) and not Path(args.source).is_file():
        print(f"store copy: {args.source} is neither an SQLite file nor a postgresql:// URL", file=sys.stderr)
        return EXIT_INVALID
    with Store(args.source) as source, Store(args.target) as target:
        try:
            copied = copy_store(source, target)
        except CopyError as exc:
            print(f"store copy: {exc}", file=sys.stderr)
            return EXIT_INVALID
    width = max(len(c.table) for c in copied)
    for c in copied:
        print(f"{c.table:<{width}}  {c.source:>9}  {c.target:>9}  {'ok' if c.ok else 'MISMATCH'}")
    if all(c.ok for c in copied):
        print(f"copied and verified: every table of {redact(args.source)} is in {redact(args.target)}")
        return EXIT_OK
    print("store copy: row counts differ (above); do not switch to the target", file=sys.stderr)
    return EXIT_INVALID


def cmd_status(args: argparse.Namespace) -> int:
    from xmppbridge.ops.status import format_status, status_report
    from xmppbridge.store import Store

    config = load_config(args.config)
    with Store(config.store_target) as store:
        report = status_report(config, store)
    print(json.dumps(report) if args.json else format_status(report))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from xmppbridge.doctor import Check, Report, diagnose, format_text, report_json
    from xmppbridge.errors import ConfigError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        report = Report.of([Check("config", "FAIL", str(exc), "fix the setting it names")])
    else:
        if not args.verbose:  # slixmpp's notes on connecting and closing are not findings
            logging.getLogger("slixmpp").setLevel(logging.WARNING)
        report = asyncio.run(diagnose(config, timeout=args.timeout))
    print(report_json(report) if args.json else format_text(report))
    return EXIT_INVALID if report.failed else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from xmppbridge.demo.run import run_demo
    from xmppbridge.demo.supervise import restart

    if args.restart:
        return restart(args.workdir.resolve(), args.restart)

    addresses = args.addresses.split(",") if args.addresses else None
    return run_demo(args.workdir, members=args.members, shape=Shape(args.topology, args.hub, args.hubs),
                    servers=args.servers, addresses=addresses, feed_port=args.feed_port)


if __name__ == "__main__":
    sys.exit(main())
