"""What a reload (SIGHUP) may change in a running bridge, and what needs a restart.

Who may read what is swapped in live: the member registry and the audiences (who reads our nodes),
and the rights of feed users, anonymous readers, chat readers and admins (``member:`` grants follow
the audiences). They are read afresh wherever they are used (the outbox drain's audience check, the
publisher's audience-empty refusal, the reconciler, the ``LivePolicy`` the feed, chat and ad-hoc
commands ask), so swapping them touches neither the store nor the outbox. So are what the registry
derives on the receive side, the trust store (pinned certificates, CAs, per-source rules) and the
subscriptions: the mirror verifies with the new trust from the next item on and follows the new
subscriptions at once (``xmpp.mirror.Mirror.follow``), so that a member joins, leaves or rotates its
key without any peer restarting (``policy.churn``). Our own signing key and certificate (``signing:``) are
read again on every reload and switched to if ``policy.ownkey`` accepts them (``reload_signing``), so a
rotating member does not restart either. Everything else (component JID and secret, ports,
store path, feed listener and credentials, ...) is wired into connections,
listeners and loops at start; a reload logs it as needing a restart and keeps the running value. A user
added on reload can log in only after a restart; an existing user's rights change at once.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import TypeVar

from xmppbridge.config.settings import Config, load_config
from xmppbridge.errors import ConfigError
from xmppbridge.feed.access import User
from xmppbridge.policy.ownkey import own_key
from xmppbridge.policy.rights import Rights
from xmppbridge.signing.keys import SigningIdentity, read_identity

T = TypeVar("T")

log = logging.getLogger(__name__)

LIVE = ("registry", "audiences", "trust", "trust_anchors", "subscriptions")
# Taken from the file too, but only once ``reload_signing`` has accepted the key they name.
SIGNING = ("signing_key", "signing_cert")
# Sections of which only the rights are live: section -> its fields that hold rights.
RIGHTS = {"feed": ("anonymous_restrictions",), "operators": ("readers", "rooms", "admins")}


def reloaded(running: Config, loaded: Config) -> tuple[Config, list[str]]:
    """``running`` with ``loaded``'s live settings, and the names of the other settings that differ."""
    sections = {name: _rights_of(getattr(running, name), getattr(loaded, name), names)
                for name, names in RIGHTS.items()}
    sections["feed"] = replace(sections["feed"], users=_user_rights(running.feed.users, loaded.feed.users))
    restart = [f.name for f in fields(Config) if f.name not in LIVE + SIGNING
               and sections.get(f.name, getattr(running, f.name)) != getattr(loaded, f.name)]
    live = {name: getattr(loaded, name) for name in LIVE + SIGNING}
    return replace(running, **live, **sections), restart


def reread(running: Config, overrides: Mapping[str, object] | None = None) -> Config | None:
    """SIGHUP: the config file read again, as ``reloaded`` applies it to ``running`` (what needs a restart
    is logged and kept), or None (logged) when the file is unusable now, so the running config stays.
    ``overrides``: the command line's settings (``serve-feed --listen``), applied again on every read."""
    file = running.file
    try:
        loaded = load_config(file, overrides=overrides)
    except ConfigError as exc:
        log.error("reload: %s; keeping the running config", exc)
        return None
    except Exception:  # noqa: BLE001 - whatever went wrong reading it, the running config stays
        log.exception("reload of %s failed; keeping the running config", file)
        return None
    config, restart = reloaded(running, loaded)
    if restart:
        log.warning("reload of %s: %s changed, which needs a restart; not applied", file, ", ".join(restart))
    return config


def reload_signing(running: Config, config: Config, identity: SigningIdentity,
                   now: datetime.datetime | None = None) -> tuple[Config, SigningIdentity]:
    """The key to sign with after a reload, and ``config`` with the ``signing:`` files of that key: the
    files ``config`` names read again (an operator may have replaced them in place), judged by
    ``policy.ownkey``; a refused key is logged as an error and the running one (``identity``, from
    ``running``'s files) kept."""
    try:
        loaded: SigningIdentity | str = read_identity(config.signing_key, config.signing_cert)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the new files, the running key stays
        loaded = str(exc) or type(exc).__name__
    own = config.registry.get(config.registry.own) if config.registry.own else None
    decision = own_key(identity, loaded, own, now or datetime.datetime.now(datetime.UTC))
    if decision.refused:
        log.error("reload: not switching our signing key: %s; still signing with %s (certificate %s)",
                  decision.refused, identity.subject, identity.fingerprint)
        return replace(config, signing_key=running.signing_key, signing_cert=running.signing_cert), identity
    line = decision.line()
    if line:
        log.info("audit: %s (reload)", line)
    return config, decision.identity


def _rights_of(running: T, loaded: T, names: tuple[str, ...]) -> T:
    return replace(running, **{name: getattr(loaded, name) for name in names})  # type: ignore[type-var]


def _user_rights(running: tuple[User, ...], loaded: tuple[User, ...]) -> tuple[User, ...]:
    """The running users (their credentials: the authenticator holds them) with their reloaded rights; a
    user no longer in the file keeps no rights."""
    rights = {user.name: user for user in loaded}
    return tuple(replace(user, read=rights[user.name].read, write=rights[user.name].write)
                 if user.name in rights else replace(user, read=Rights(), write=Rights()) for user in running)
