"""``python -m spendgate``: the same as the ``spendgate`` command."""

from .cli import main

main()
