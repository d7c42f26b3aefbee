"""Reading one YAML config file with error messages that name file and key.

A leaf module: the config sections (feed, chat, trust, members) parse their part with a ``ConfigReader``
and ``config/settings.py`` assembles them, so no section imports it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xmppbridge.errors import ConfigError


class ConfigReader:
    """Walks the YAML mapping, remembering the dotted key for error messages. Sections owned by other
    packages (e.g. the feed's) are parsed with one of these, so every error names file and key."""

    def __init__(self, file: Path, data: dict[str, Any]) -> None:
        self.file, self.data = file, data

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(str(self.file), key, problem)

    def get(self, key: str, default: Any = ..., kind: type | tuple[type, ...] = str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node or node[part] is None:
                if default is ...:
                    raise self.error(key, "is required")
                return default
            node = node[part]
        if kind is int and isinstance(node, bool) or not isinstance(node, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(key, f"must be a {names}, got {type(node).__name__} {node!r}")
        return node

    def path(self, key: str, value: str, *, must_exist: bool = True) -> Path:
        path = Path(value)
        if not path.is_absolute():
            path = self.file.parent / path
        if must_exist and not path.exists():
            raise self.error(key, f"{path} does not exist")
        return path
