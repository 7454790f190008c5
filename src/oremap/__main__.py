"""``python -m oremap``: the command line."""

from oremap.cli import main

main()
