"""`python -m magvit_cli`: the `magvit` command where its script is not installed."""

from .cli import entry

entry()
