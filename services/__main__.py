"""``python -m spendgate``: the same as the ``spendgate`` command."""

from spendgate.cli import main

main()
