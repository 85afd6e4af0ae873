"""``python -m mtor_cli`` is ``mtor`` (used to spawn the embedded realm service)."""

from mtor_cli.app import main

main()
