"""``mtor realm``: the embedded default realm (local broker + chat worker)."""

from __future__ import annotations

from pathlib import Path

import typer

from mtor_cli import output

group = typer.Typer(
    name="realm",
    help="The embedded local realm, used when no broker is configured.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    import importlib

    app.add_typer(group)
    importlib.import_module("mtor_cli.commands.realm_models").register_on(group)  # realm models


@group.command("start")
def start(
    model: str | None = typer.Option(
        None, "--model", "-m", help="Chat model path or hub id (default: SmolLM2-135M-Instruct)."
    ),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port (0: a free one)."),
    gpu: int | None = typer.Option(None, "--gpu", min=0, help="Serve on cuda:N in half precision."),
    wait: float = typer.Option(300.0, "--wait", min=1, help="Seconds to wait for the worker to load."),
    json_out: bool = typer.Option(False, "--json", help="Print the status as one JSON object."),
) -> None:
    """Start the embedded realm in the background (no-op if it is running).

    It listens on the port it used last time (when free), so workers and
    dashboards pointed at it find it again after a restart.

    Example:

      mtor realm start --gpu 0
    """
    from mtor_cli import realm
    from mtor_cli.client import RealmError

    try:
        info = realm.start(model=model, port=port, gpu=gpu, wait_s=wait)
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    _show(info, json_out)


@group.command("stop")
def stop() -> None:
    """Stop the embedded realm's background service.

    Example:

      mtor realm stop
    """
    from mtor_cli import realm

    if realm.stop():
        output.note("the embedded realm stopped")
    else:
        output.note("the embedded realm was not running")


@group.command("status")
def status(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Whether the embedded realm runs, where, and its workers. Exit 3 if it is down.

    Example:

      mtor realm status --json
    """
    from mtor_cli import realm

    info = realm.status()
    _show(info, json_out)
    if not info["running"]:
        raise SystemExit(output.EXIT_UNREACHABLE)


@group.command("run")
def run(
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    model: str | None = typer.Option(None, "--model", "-m", help="Chat model path or hub id."),
    db: Path | None = typer.Option(None, "--db", help="Journal path (default: the realm's)."),
    gpu: int | None = typer.Option(None, "--gpu", min=0, help="Serve on cuda:N."),
) -> None:
    """Run the embedded realm in the foreground until Ctrl-C (what `start` detaches).

    Example:

      mtor realm run --host 0.0.0.0 --port 8765
    """
    from mtor_cli import realm
    from mtor_cli.client import RealmError

    try:
        model_path = realm.resolve_model(model)
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    realm.run_service(host=host, port=port, db=db or realm.journal_file(), model=model_path, gpu=gpu)


@group.command("logs")
def logs(
    lines: int = typer.Option(40, "--lines", "-n", min=0, help="How many of the last lines to show first."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until Ctrl-C."),
) -> None:
    """The embedded realm's log: broker, worker and ledger messages.

    Example:

      mtor realm logs -f
    """
    import collections
    import time

    from mtor_cli import realm

    path = realm.log_file()
    if not path.exists() and not follow:
        output.fail("no_log", f"the embedded realm has no log yet ({path})", "start it with `mtor realm start`")
    path.touch()
    with path.open("r", errors="replace") as fh:
        for line in collections.deque(fh, maxlen=lines):  # reads to the end: follow from there
            print(line, end="")
        while follow:
            line = fh.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.2)


def _show(info: dict, json_out: bool) -> None:
    if json_out:
        output.print_json(info)
        return
    console = output.out_console()
    if not info["running"]:
        console.print(f"the embedded realm is not running (log: {info['log']})")
        return
    workers = ", ".join(
        f"{w.get('name') or w.get('id') or '?'}" for w in info["workers"]
    ) or "none yet"
    console.print(
        f"the embedded realm runs at [bold]{info['url']}[/bold] (pid {info['pid']})\n"
        f"model: {info['model']}\nworkers: {workers}\nlog: {info['log']}\njournal: {info['journal']}"
    )
