"""The benchmarks' command line: a line they do not understand must not start a run of many minutes."""

from __future__ import annotations

import sys

import pytest

from bench.common import option, positional

OPTIONS = ("--items", "--hub-nice")


def test_sizes_are_the_arguments_that_are_neither_options_nor_their_values(monkeypatch: pytest.MonkeyPatch
                                                                           ) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", "8", "--hub-nice", "-10", "16", "--items=3", "--keep"])
    assert positional(*OPTIONS, flags=("--keep",)) == ["8", "16"]
    assert option("--hub-nice", "0") == "-10"
    assert option("--items", "250") == "3"


@pytest.mark.parametrize("argv", [["16", "--topolgy", "hub"], ["16", "--keep"], ["-x"]])
def test_an_unknown_option_exits_before_anything_runs(monkeypatch: pytest.MonkeyPatch,
                                                      argv: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    with pytest.raises(SystemExit) as stopped:
        positional(*OPTIONS)
    assert "nothing was run" in str(stopped.value.code)
    assert "--items" in str(stopped.value.code)


def test_help_prints_the_scripts_docstring_and_exits(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", "16", "--help"])
    monkeypatch.setattr(sys.modules["__main__"], "__doc__", "Benchmark: what it measures.")
    with pytest.raises(SystemExit) as stopped:
        positional(*OPTIONS)
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == "Benchmark: what it measures."
