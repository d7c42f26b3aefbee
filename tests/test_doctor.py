"""`xmppbridge doctor`'s pure core (checks, report, the decisions) and its request to a running bridge."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.pki import DAY, NOW, issue, make_ca, make_crl
from xmppbridge.doctor import relay
from xmppbridge.doctor.advice import (
    base_url_check,
    certificate_check,
    connection_check,
    crl_check,
    nodes_check,
    signing_usage_check,
    xmpp_error_fix,
)
from xmppbridge.doctor.local import feed_checks, signing_checks
from xmppbridge.doctor.report import Check, Report, checks_from_data, format_text, report_json
from xmppbridge.feed.settings import FeedSettings
from xmppbridge.peers import TIMEOUT
from xmppbridge.signing.keys import generate_identity_files
from xmppbridge.store import Store
from xmppbridge.xmpp.servers import ServerAddress


def test_report_fails_only_with_a_fail_and_prints_one_line_per_check() -> None:
    checks = [Check("component connection", "ok", "connected"), Check("feed base URL", "warn", "plain HTTP",
                                                                       "use https")]
    assert not Report.of(checks).failed
    report = Report.of([*checks, Check("peer x reachable", "FAIL", "remote-server-not-found", "fix DNS")])
    assert report.failed
    text = format_text(report).splitlines()
    assert text[0].split() == ["ok", "component", "connection", "connected"]
    assert text[1].endswith("plain HTTP -> use https")
    assert text[2].startswith("FAIL peer x reachable") and text[2].endswith("-> fix DNS")
    assert text[-1] == "1 ok, 1 warn, 1 FAIL"
    data = json.loads(report_json(report))
    assert data["failed"] is True
    assert checks_from_data(data["checks"]) == list(report.checks)


def test_a_check_has_one_of_three_statuses_and_bad_data_is_refused() -> None:
    with pytest.raises(ValueError):
        Check("x", "error", "?")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        checks_from_data([{"name": "x", "status": "ok"}])
    with pytest.raises(ValueError):
        checks_from_data({"checks": []})


@pytest.mark.parametrize(("start", "days", "status", "words"), [
    (NOW - 10 * DAY, 400, "ok", "days left"),
    (NOW - 10 * DAY, 30, "warn", "days left"),
    (NOW - 400 * DAY, 365, "FAIL", "expired on"),
    (NOW + 2 * DAY, 365, "FAIL", "not valid before"),
])
def test_certificate_validity(start: object, days: int, status: str, words: str) -> None:
    certificate = issue(make_ca(), "CSIRT B", not_before=start, days=days).certificate  # type: ignore[arg-type]
    check = certificate_check("signing certificate", certificate, NOW, renew="renew it")
    assert check.status == status and words in check.found
    assert (check.fix == "") == (status == "ok")


def test_signing_key_usage() -> None:
    ca = make_ca()
    assert signing_usage_check("u", issue(ca, "s", usage="sign").certificate).status == "ok"
    assert signing_usage_check("u", issue(ca, "n", usage=None).certificate).status == "ok"
    refused = signing_usage_check("u", issue(ca, "e", usage="encipher").certificate)
    assert refused.status == "FAIL" and "digitalSignature" in refused.found


def test_crl_freshness() -> None:
    ca = make_ca()
    assert crl_check("CRL 0", make_crl(ca, [], days=30), NOW).status == "ok"
    soon = crl_check("CRL 0", make_crl(ca, [], last_update=NOW - 6 * DAY, days=7), NOW)
    assert soon.status == "warn" and "soon" in soon.found
    stale = crl_check("CRL 0", make_crl(ca, [], last_update=NOW - 10 * DAY, days=7), NOW)
    assert stale.status == "FAIL" and "stale" in stale.found and "revocation-unknown" in stale.fix


def test_xmpp_errors_point_at_their_usual_cause() -> None:
    not_found = xmpp_error_fix("remote-server-not-found", "pubsub.b.example")
    assert "lua-unbound" in not_found and "_xmpp-server._tcp.pubsub.b.example" in not_found
    assert "5269" in xmpp_error_fix("remote-server-timeout", "pubsub.b.example")
    # Our own request that got no answer (peers.TIMEOUT) gets the same fix as the server's timeout.
    assert xmpp_error_fix(TIMEOUT, "pubsub.b.example", "no answer within 30 s") == \
        xmpp_error_fix("remote-server-timeout", "pubsub.b.example")
    refused = xmpp_error_fix("remote-server-not-found", "pubsub.b.example",
                             "Server-to-server connection failed: connection refused")
    assert "nothing accepted the connection" in refused and "lua-unbound" not in refused
    timed_out = xmpp_error_fix("remote-server-not-found", "pubsub.b.example",
                               "Server-to-server connection failed: connection timeout")
    assert "firewall" in timed_out and "lua-unbound" not in timed_out
    assert "audience" in xmpp_error_fix("forbidden", "pubsub.b.example")
    assert "subscriptions[].service" in xmpp_error_fix("service-unavailable", "pubsub.b.example")


def test_nodes_found_by_discovery_or_configured() -> None:
    assert nodes_check("n", "pubsub.b", None, ["iodef/public/reporting"]).status == "ok"
    assert nodes_check("n", "pubsub.b", None, []).status == "warn"
    assert nodes_check("n", "pubsub.b", ("iodef/a",), ["iodef/a", "iodef/b"]).status == "ok"
    missing = nodes_check("n", "pubsub.b", ("iodef/a", "typo"), ["iodef/a"])
    assert missing.status == "warn" and "typo" in missing.found and "iodef/a" not in missing.found


def test_base_url() -> None:
    assert base_url_check("http://127.0.0.1:8080/", tls=False).status == "ok"
    assert base_url_check("https://feed.example/", tls=False).status == "ok"
    assert base_url_check("http://feed.example/", tls=False).status == "warn"
    assert base_url_check("https:///", tls=True).status == "FAIL"


@pytest.mark.parametrize(("outcome", "status", "words"), [
    ("online", "ok", "secret accepted"),
    ("not-authorized", "FAIL", "component.secret"),
    ("refused", "FAIL", "component port must be open"),
    ("host-unknown", "FAIL", 'Component "bridge.a.test"'),
    ("timeout", "FAIL", "within 5 s"),
    ("closed", "FAIL", "closed the connection"),
])
def test_connection_outcomes(outcome: str, status: str, words: str) -> None:
    check = connection_check(outcome, "", jid="bridge.a.test", address="127.0.0.1:5347", timeout=5)
    assert check.status == status
    assert words in check.found + check.fix


async def test_the_running_bridge_answers_a_request_through_the_store(tmp_path: Path) -> None:
    """The protocol of ``relay``, with a bridge that is not connected: it answers that it is not."""
    config = SimpleNamespace(subscriptions=(), servers=(ServerAddress("127.0.0.1", 5347),),
                             jid="bridge.a.test")
    offline = SimpleNamespace(online=asyncio.Event())
    with Store(tmp_path / "s.sqlite") as store:
        bridge = asyncio.create_task(relay.answer_doctor(config, store, offline))  # type: ignore[arg-type]
        try:
            checks = await relay.ask_bridge(store, config, timeout=1.0)  # type: ignore[arg-type]
        finally:
            bridge.cancel()
    assert checks is not None
    [check] = checks
    assert check.status == "FAIL" and "not connected" in check.found


async def test_no_answer_when_no_bridge_takes_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(relay, "ACK_WAIT", 0.3)
    config = SimpleNamespace(subscriptions=())
    with Store(tmp_path / "s.sqlite") as store:
        assert await relay.ask_bridge(store, config, timeout=1.0) is None  # type: ignore[arg-type]


def _signing_config(tmp_path: Path, key: str = "k.pem") -> SimpleNamespace:
    generate_identity_files("CSIRT A", tmp_path / "k.pem", tmp_path / "c.pem", kind="ec")
    generate_identity_files("Other", tmp_path / "other.pem", tmp_path / "other-c.pem", kind="ec")
    return SimpleNamespace(signing_key=tmp_path / key, signing_cert=tmp_path / "c.pem")


def test_signing_checks_pass_for_a_matching_pair(tmp_path: Path) -> None:
    checks = signing_checks(_signing_config(tmp_path), NOW)  # type: ignore[arg-type]
    assert [c.status for c in checks] == ["ok", "ok", "ok"]


def test_signing_checks_catch_a_key_of_another_certificate(tmp_path: Path) -> None:
    checks = signing_checks(_signing_config(tmp_path, key="other.pem"), NOW)  # type: ignore[arg-type]
    [failed] = [c for c in checks if c.status == "FAIL"]
    assert failed.name == "signing key" and "does not belong" in failed.found


def test_feed_address_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        feed = FeedSettings(base_url=f"http://127.0.0.1:{port}/", listen_port=port)
        [other, _] = feed_checks(feed, NOW, bridge_running=False)
        [ours, _] = feed_checks(feed, NOW, bridge_running=True)
    assert other.status == "FAIL" and "in use by another program" in other.found
    assert ours.status == "ok"
    [free, _] = feed_checks(feed, NOW, bridge_running=False)
    assert free.status == "ok" and "free" in free.found
