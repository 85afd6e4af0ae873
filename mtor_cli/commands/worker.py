"""``mtor worker``: serve models to a realm as a volunteer worker."""

from __future__ import annotations

import asyncio
import importlib
import signal
from pathlib import Path
from typing import Any

import typer

from mtor_cli import options, output

group = typer.Typer(name="worker", help="Serve models to a realm as a volunteer worker.", no_args_is_help=True)

CONFIG_HELP = (
    r"TOML file: broker, gpu, slots, name and \[\[backend]] tables (see the example above); a backend's"
    " options default to the table named after its intent in your config.toml (\\[email], \\[weather])."
)

SERVE_HELP = r"""Serve models to a realm until Ctrl-C.

The worker connects out to the broker (so it works behind NAT), registers
what this machine serves, and answers work. Without --broker, $MTOR_BROKER or
`broker` in the config file, it joins the embedded local realm (started if
it is not running).

Examples:

  mtor worker serve --broker ws://realm.example:8765 --gpu 0

  mtor worker serve --intent imagine --model ./sd-turbo

  mtor worker serve --config worker.toml

A --config file, e.g. worker.toml:

  broker = "ws://realm.example:8765"
  gpu = 0
  \[\[backend]]
  intent = "chat"
  \[\[backend]]
  intent = "imagine"
  model = "/models/sd-turbo"
  options = { max_steps = 30 }
"""


def register(app: typer.Typer) -> None:
    app.add_typer(group)
    importlib.import_module("mtor_cli.commands.earnings").register_on(group)  # ledger: earnings, earnings claim


@group.command("serve", help=SERVE_HELP)
def serve(
    broker: str | None = options.broker_option(),
    intent: list[str] = typer.Option(
        [], "--intent", "-i", help="Intent to serve (repeatable; pairs with --model by position). Default: chat."
    ),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="Hub id or local path for the intent at the same position (default: the backend's)."
    ),
    gpu: int | None = typer.Option(None, "--gpu", min=0, help="Run on cuda:N in half precision (default: CPU)."),
    upstream: str | None = typer.Option(
        None,
        "--upstream",
        help="Front an OpenAI-compatible server (Ollama, vLLM, llama.cpp) for chat/vision, "
        "e.g. --upstream http://127.0.0.1:11434/v1 --model llama3.",
        show_default=False,
    ),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        help="With --upstream: the model's tokenizer (a .gguf, a model folder or hub id), to count usage "
        "when the upstream sends none (llama.cpp's server). Default: the upstream's model id if it is a local path.",
        show_default=False,
    ),
    slots: int | None = typer.Option(
        None, "--slots", min=1, help="Jobs at once (default: what the backends can batch, e.g. 32 for chat)."
    ),
    runtime: str | None = typer.Option(
        None,
        "--runtime",
        help="Chat runtime: auto (default: int8 ONNX on CPU, built once; transformers on a GPU), onnx or "
        "transformers. See docs/runtimes.md.",
        show_default=False,
    ),
    keep_alive: float | None = typer.Option(
        None,
        "--keep-alive",
        min=0,
        help="Seconds without a chat before its model is unloaded (default 300; 0 keeps it loaded).",
        show_default=False,
    ),
    name: str | None = typer.Option(None, "--name", help="Name shown in the realm's worker list."),
    drain: float = typer.Option(
        30.0, "--drain", min=0.0,
        help="On Ctrl-C/SIGTERM: seconds running jobs may finish before they are handed back to the realm.",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP, show_default=False),
    key: Path | None = typer.Option(
        None, "--key", help="Key file for this worker's identity (default: your own key)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log only warnings and errors."),
) -> None:
    settings = _load_config(config) if config else {}
    url = broker or _config_broker(settings, config) or options.resolve_broker(None)
    specs = _backend_specs(intent, model, settings.get("backend", []))
    if gpu is None:
        gpu = settings.get("gpu")
    slots = slots or (int(settings["slots"]) if settings.get("slots") else None)
    name = name if name is not None else str(settings.get("name", ""))

    from mtor_cli.commands.ledger import account_from
    from worker.backends.base import Backend, Device, DeviceError
    from worker.backends.registry import UnknownIntent, backend_class

    account = account_from(key)  # before any model loads: a bad key fails at once

    try:
        device = Device.parse(gpu)
    except DeviceError as exc:
        output.fail("usage", exc.message, exc.hint)
    backends: list[Backend] = []
    for spec in specs:
        if upstream or "upstream" in spec.get("options", {}):
            from worker.backends.upstream import upstream_backend_class

            backend_options = {"upstream": upstream, **dict(spec.get("options", {}))}
            if tokenizer is not None:
                backend_options["tokenizer"] = tokenizer
            try:
                backends.append(upstream_backend_class(spec["intent"])(spec.get("model"), device, **backend_options))
            except ValueError as exc:
                output.fail("usage", str(exc), "e.g. --upstream http://127.0.0.1:11434/v1 --model llama3")
            continue
        try:
            cls = backend_class(spec["intent"])
        except UnknownIntent as exc:
            output.fail("usage", exc.message, exc.hint)
        model_name = spec.get("model")
        backend_options = {**_configured_options(spec["intent"]), **dict(spec.get("options", {}))}
        if spec["intent"] == "chat":
            from mtor_cli.chat_model import prepare_chat_model
            from mtor_cli.client import RealmError

            try:
                prepared = prepare_chat_model(model_name, runtime or backend_options.get("runtime", "auto"), gpu)
            except RealmError as exc:
                output.fail(exc.code, exc.message, exc.hint)
            model_name = prepared.model
            backend_options["runtime"] = prepared.runtime
            if keep_alive is not None:
                backend_options["keep_alive"] = keep_alive
        backends.append(cls(model_name, device, **backend_options))

    served = ", ".join(f"{b.intent} ({b.model_name})" for b in backends)
    from worker.loop import default_slots

    output.note(
        f"worker {account.address} serving {served} on {device}, {slots or default_slots(backends)} slot(s) -> {url}"
    )
    output.note("loading models ...")
    output.log_to_stderr(quiet=quiet)
    code = asyncio.run(_run(url, backends, account, slots, name, drain))
    raise SystemExit(code)


async def _run(url: str, backends: list[Any], account: Any, slots: int | None, name: str, drain: float) -> int:
    from worker import Worker, WorkerConfig

    try:
        config = WorkerConfig(broker_url=url, slots=slots, name=name, drain_s=drain)
    except ValueError as exc:
        output.fail("usage", str(exc), "e.g. --broker ws://127.0.0.1:8765")
    worker = Worker(config, backends, account)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(worker.run())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        output.note("stopping: finishing or handing back running jobs ...")
        await worker.stop()
    stopper.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # the worker gave up (e.g. rejected by the broker)
        code = getattr(exc, "code", "worker_failed")
        output.fail(code, str(getattr(exc, "message", exc)), getattr(exc, "hint", ""))
    output.note("worker stopped")
    return output.EXIT_OK


def _configured_options(intent: str) -> dict[str, Any]:
    """A backend's options from the user's config table named after its intent
    (``[email]`` from `mtor email login`, ``[weather]`` for its API URLs); --config wins."""
    from mtor_cli.paths import config_file, load_config

    try:
        table = load_config().get(intent)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        output.fail("usage", f"cannot read {config_file()}: {exc}", "fix or remove the file")
    return dict(table) if isinstance(table, dict) else {}


def _config_broker(settings: dict[str, Any], path: Path | None) -> str | None:
    url = settings.get("broker")
    if url is None:
        return None
    from mtor_cli.client import RealmError, check_urls

    try:
        check_urls(str(url))
    except RealmError as exc:
        output.fail("usage", f"`broker` in --config {path}: {exc.message}", exc.hint)
    return str(url)


def _load_config(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        output.fail("usage", f"cannot read --config {path}: {exc}", "check the file (TOML)")


def _backend_specs(intents: list[str], models: list[str], configured: list[Any]) -> list[dict[str, Any]]:
    """Pair --intent/--model by position, after the config file's backends."""
    specs: list[dict[str, Any]] = []
    for entry in configured:
        if not isinstance(entry, dict) or not isinstance(entry.get("intent"), str):
            output.fail("usage", "every [[backend]] in --config needs an intent", 'e.g. intent = "chat"')
        specs.append(dict(entry))
    if not intents and models:
        intents = ["chat"]
    if len(models) > len(intents):
        output.fail(
            "usage",
            f"{len(models)} --model for {len(intents)} --intent",
            "give one --intent per --model, e.g. --intent chat --model M1 --intent imagine --model M2",
        )
    for n, name in enumerate(intents):
        specs.append({"intent": name, "model": models[n] if n < len(models) else None})
    if not specs:
        specs.append({"intent": "chat", "model": None})
    seen: set[str] = set()
    for spec in specs:
        if spec["intent"] in seen:
            output.fail("usage", f"intent {spec['intent']!r} is given twice", "serve each intent once per worker")
        seen.add(spec["intent"])
    return specs


@group.command("intents")
def intents(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """The intents this machine has a backend for (built in or plugged in), and the
    runtime that would serve chat here (`runtimes.chat`).

    Example:

      mtor worker intents --json
    """
    from worker.backends.chat_runtimes import runtime_report
    from worker.backends.registry import available_intents

    names = available_intents()
    runtimes = {"chat": runtime_report()} if "chat" in names else {}
    if json_out:
        output.print_json({"intents": names, "runtimes": runtimes})
    else:
        for item in names:
            serves = runtimes.get(item, {}).get("serves")
            print(f"{item} (runtime: {serves})" if serves else item)
