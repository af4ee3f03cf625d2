"""The defaults `authority --help` states are the library's constants. The command line writes them as
literals (importing the modules that define them would load torch before `--help` answers), so this test
keeps the two in step."""

from __future__ import annotations

import click

from vetohash_authority.cli import cli
from vetohash_authority.evaluation import PAPER_THRESHOLD
from vetohash_authority.publishing import DEFAULT_DCT_THRESHOLD


def _option(command: str, name: str) -> click.Option:
    return next(p for p in cli.commands[command].params if isinstance(p, click.Option) and p.name == name)


def _help(command: str) -> str:
    ctx = click.Context(cli.commands[command], info_name=command)
    return " ".join(cli.commands[command].get_help(ctx).split())


def test_evaluate_reports_at_the_paper_s_threshold_by_default() -> None:
    assert _option("evaluate", "threshold").default == PAPER_THRESHOLD


def test_publish_help_states_the_thresholds_used_without_calibration() -> None:
    text = _help("publish")
    assert f"else the paper's {PAPER_THRESHOLD}." in text
    assert f"else {DEFAULT_DCT_THRESHOLD}." in text
    assert f"the defaults are {PAPER_THRESHOLD} (network) and {DEFAULT_DCT_THRESHOLD} (DCT)" in text
