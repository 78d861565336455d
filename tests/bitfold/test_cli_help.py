"""Every option of every verb says what it does; ``bitfold --version`` names the release."""

from __future__ import annotations

import argparse

import pytest

import bitfold
from bitfold.cli import build_parser, main


def test_every_option_of_every_verb_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bare = {verb: [a.option_strings[-1] if a.option_strings else a.dest for a in p._actions
                   if not a.help and not isinstance(a, argparse._HelpAction)]
            for verb, p in sub.choices.items()}
    assert {verb: names for verb, names in bare.items() if names} == {}


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"bitfold {bitfold.__version__}\n"
