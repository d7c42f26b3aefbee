"""Structured logs: one JSON object per line, extra fields kept."""

from __future__ import annotations

import json
import logging

import pytest

from xmppbridge.process.logs import configure_logging


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    before = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        configure_logging(json_lines=True)
        log = logging.getLogger("xmppbridge.test")
        log.info("published %s", "item-1", extra={"node": "iodef/public/reporting"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().handlers[:], level = before
        logging.getLogger().setLevel(level)
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["message"] == "published item-1" and first["level"] == "info"
    assert first["logger"] == "xmppbridge.test" and first["node"] == "iodef/public/reporting"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]
