"""The ``mtor`` verbs, one module per command group.

Each module exposes ``register(app: typer.Typer) -> None`` that adds its
command(s) to the root app, and is listed by name in
``mtor_cli.app.COMMAND_MODULES`` (adding a group is a one-line change there).
Modules here are imported for ``mtor --help``: keep their top level light
(typer, rich, the standard library) and import anything heavy inside the
command function.
"""
