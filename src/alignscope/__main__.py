"""``python -m alignscope`` runs the CLI."""

from alignscope.cli import main

main()
