"""``python -m generator`` is the ``portwright`` command."""

from .cli import main

main()
