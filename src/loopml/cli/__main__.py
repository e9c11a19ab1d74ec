"""``python -m loopml.cli``: the same as the ``loopml`` console script."""

from loopml.cli.main import main

main()
