"""Plain-text commands, as a person types them into any XMPP client."""

from __future__ import annotations

from dataclasses import dataclass

HELP = """Commands:
  help                        this text
  latest [N]                  the N most recent incidents you may see (default 5)
  show <incident>             one incident, by its IncidentID (e.g. INC-1001) or #number
  search <text>               incidents whose descriptions contain all these words
  subscribe <category>        get a message for each new or updated incident, e.g.
                              subscribe need-to-know/mitigation, subscribe public, subscribe all
  unsubscribe <category>      stop them (unsubscribe all: every subscription)
  subscriptions               what you are subscribed to"""

NAMES = ("help", "latest", "show", "search", "subscribe", "unsubscribe", "subscriptions")
MAX_LATEST = 20


@dataclass(frozen=True)
class Command:
    name: str  # one of NAMES
    argument: str = ""
    count: int = 0  # for latest


class CommandError(ValueError):
    """The text is not a command; the message says what to type instead."""


def parse(text: str, *, default_latest: int = 5) -> Command:
    words = text.strip().split(None, 1)
    if not words:
        raise CommandError("Send 'help' for the list of commands.")
    name, argument = words[0].lower().lstrip("/"), (words[1].strip() if len(words) > 1 else "")
    if name not in NAMES:
        raise CommandError(f"Unknown command {words[0]!r}. Send 'help' for the list of commands.")
    if name == "latest":
        if not argument:
            return Command(name, count=default_latest)
        if not argument.isdigit() or not 1 <= int(argument) <= MAX_LATEST:
            raise CommandError(f"latest takes a number from 1 to {MAX_LATEST}, e.g. 'latest 5'.")
        return Command(name, count=int(argument))
    if name in ("show", "search", "subscribe", "unsubscribe") and not argument:
        example = {"show": "show INC-1001", "search": "search botnet", "subscribe": "subscribe public",
                   "unsubscribe": "unsubscribe public"}[name]
        raise CommandError(f"{name} needs an argument, e.g. '{example}'.")
    if name in ("help", "subscriptions") and argument:
        raise CommandError(f"{name} takes no argument.")
    return Command(name, argument)
