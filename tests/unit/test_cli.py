"""The one CLI: every subcommand answers --help, and a bad setting is a clear error, not a traceback."""
import subprocess
import sys

import pytest

from tweetops.cli import COMMANDS, build_parser

TWEETOPS = [sys.executable, "-m", "tweetops.cli"]


def _subcommands(parser, prefix=()):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield (*prefix, name)
            yield from _subcommands(sub, (*prefix, name))


@pytest.mark.parametrize("command", sorted(set(_subcommands(build_parser()))))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: tweetops " + " ".join(command) in capsys.readouterr().out


def test_top_level_help_lists_commands():
    out = subprocess.run([*TWEETOPS, "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out


def test_bad_setting_is_a_clear_error():
    result = subprocess.run([*TWEETOPS, "stack", "status"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "TWEETOPS_KAFKA_BOOTSTRAP": "nonsense"})
    assert result.returncode == 2
    assert "TWEETOPS_KAFKA_BOOTSTRAP='nonsense'" in result.stderr
    assert "Traceback" not in result.stderr
