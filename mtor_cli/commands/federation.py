"""``mtor federation``: pin peer realms, see how they do, certify a realm."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from mtor_cli import money, options, output

DB_HELP = "The realm's journal (its federation store and key live beside it). Default: the broker's default journal."
DEFAULT_CREDIT = "1"  # $9000: a new peer's credit limit, small until it has settled a few times
DEFAULT_QUEUED = 100
WS_SCHEME = {"http": "ws", "https": "wss"}

group = typer.Typer(
    name="federation",
    help="Peer realms: key, pins, status, settlement on chain, certify.",
    no_args_is_help=True,
)
peer_group = typer.Typer(name="peer", help="Pin, list and remove peer realms.", no_args_is_help=True)
group.add_typer(peer_group)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


def _db(db: Path | None) -> Path:
    from broker.config import default_db_path

    return db if db is not None else default_db_path()


def _store(db: Path | None) -> Any:
    from broker.federation import FederationStore, federation_path

    return FederationStore(federation_path(_db(db)))


def _realm_key(db: Path | None) -> Any:
    from broker.federation import RealmKey, realm_key_path
    from broker.protocol import MtorError

    try:
        return RealmKey.load_or_create(realm_key_path(_db(db)))
    except MtorError as exc:
        output.fail(exc.code, exc.message, exc.hint)


@group.command("key")
def key(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """This realm's key: the address peers pin (created on first use).

    Give it to a peer's operator with your realm's URL, so they can run
    `mtor federation peer add wss://your-realm:8765 --name you --key ADDRESS`.

    Example:

      mtor federation key --db /srv/mtor/broker.db
    """
    from broker.federation import realm_key_path

    realm_key = _realm_key(db)
    path = realm_key_path(_db(db))
    if json_out:
        output.print_json({"address": realm_key.address, "key_file": str(path)})
        return
    print(realm_key.address)
    output.note(f"key file {path} (keep it: a new key is a new realm id every peer must pin again)")


def _peer_url(url: str) -> str:
    """A peer's base URL, ws(s)://host:port; a usage error if it is not one."""
    from urllib.parse import urlsplit

    from mtor_cli.client import RealmError, check_url

    try:
        scheme, netloc = check_url(url)
    except RealmError as exc:
        output.fail("usage", exc.message, "e.g. wss://other-realm.example:8765")
    if "://" in url and urlsplit(url).path not in ("", "/", "/ws/realm"):
        output.fail("usage", f"{url!r}: give the realm's address, not a path on it", "e.g. wss://other-realm:8765")
    return f"{WS_SCHEME.get(scheme, scheme)}://{netloc}"


def _published_key(url: str) -> str:
    from mtor_cli.client import RealmError, http_get_json

    try:
        data = http_get_json(url, "/v1/federation")
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    address = (data.get("realm") or {}).get("address") if isinstance(data, dict) else None
    if not isinstance(address, str):
        output.fail("not_peer", f"{url} publishes no realm key (it has never federated)",
                    "ask its operator for `mtor federation key` and pass it with --key")
    return address


@peer_group.command("add")
def peer_add(
    url: str = typer.Argument(..., help="The peer realm's address, wss://HOST:PORT (ws:// on a private network)."),
    name: str = typer.Option(..., "--name", help="What this realm calls the peer (status, logs)."),
    key: str | None = typer.Option(None, "--key", help="The peer's realm key (its `mtor federation key`)."),
    tofu: bool = typer.Option(
        False, "--tofu", help="Dev realms only: pin whatever key the peer publishes now (trust on first use)."
    ),
    max_credit: str = typer.Option(
        DEFAULT_CREDIT, "--max-credit", help="$9000 the peer may owe this realm unsettled before it is refused."
    ),
    max_queued: int = typer.Option(
        DEFAULT_QUEUED, "--max-queued", min=1, help="The peer's intents waiting here at once, per intent."
    ),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Pin a peer realm's key: traffic flows once the peer pins this realm too.

    A running broker dials the peer within a second. Pinning is explicit:
    the key comes from the peer's operator (`mtor federation key` there),
    never from the network, unless --tofu says this is a dev realm.

    Example:

      mtor federation peer add wss://other-realm:8765 --name other --key 0xAb12... --max-credit 5
    """
    from broker.federation import FederationError, PeerRecord
    from broker.federation.keys import checksum, is_address

    base = _peer_url(url)
    if key is None and not tofu:
        output.fail(
            "usage",
            "a peer's key must be pinned explicitly",
            "pass --key ADDRESS (the peer's `mtor federation key`), or --tofu on a dev realm",
        )
    address = key if key is not None else _published_key(base)
    if not is_address(address):
        output.fail("usage", f"--key {address!r} is not an address", "0x followed by 40 hex digits")
    credit = money.parse(max_credit, "--max-credit")
    record = PeerRecord(name, base, checksum(address), credit, max_queued, time.time())
    mine = _realm_key(db).address
    store = _store(db)
    try:
        store.add_peer(record)
    except FederationError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    finally:
        store.close()
    if json_out:
        output.print_json({**_record_json(record), "realm_key": mine})
        return
    print(f"pinned peer {name} ({record.address}) at {base}; credit limit {money.fmt(credit)} $9000")
    if key is None:
        output.note("the key was taken from the peer itself (--tofu): compare it with its operator's")
    output.note(
        f"traffic flows once {name} pins this realm too: "
        f"mtor federation peer add <this realm's URL> --name <name> --key {mine}"
    )


@peer_group.command("list")
def peer_list(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """The pinned peers.

    Example:

      mtor federation peer list --json
    """
    store = _store(db)
    try:
        peers = store.peers()
    finally:
        store.close()
    if json_out:
        output.print_json({"peers": [_record_json(p) for p in peers]})
        return
    from rich.table import Table

    table = Table(title="pinned peers")
    if not peers:
        table.add_column("")
        table.add_row("no peers: pin one with `mtor federation peer add URL --name N --key ADDRESS`")
    else:
        for column in ("name", "url", "key", "max credit $9000", "max queued"):
            table.add_column(column)
        for p in peers:
            table.add_row(p.name, p.url, p.address, money.fmt(p.max_credit), str(p.max_queued))
    output.out_console().print(table)


@peer_group.command("remove")
def peer_remove(
    name: str = typer.Argument(..., help="The peer's name (or key)."),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Unpin a peer: a running broker drops its connections within a second.

    What each realm owes the other stays on record.

    Example:

      mtor federation peer remove other
    """
    from broker.federation import FederationError

    store = _store(db)
    try:
        record = store.remove_peer(name)
    except FederationError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    finally:
        store.close()
    if json_out:
        output.print_json({"removed": _record_json(record)})
        return
    print(f"removed peer {record.name} ({record.address})")


def _record_json(record: Any) -> dict[str, Any]:
    return {
        "name": record.name,
        "url": record.url,
        "address": record.address,
        **money.fields("max_credit", record.max_credit),
        "max_queued": record.max_queued,
        "added": record.added,
    }


@group.command("status")
def status(
    broker: str | None = options.broker_option(),
    json_out: bool = options.json_option(),
) -> None:
    """Every peer's link, health, traffic and credit, as the running broker sees them.

    Example:

      mtor federation status --broker ws://127.0.0.1:8765
    """
    from mtor_cli.client import RealmError, http_get_json

    url = options.configured_broker() if broker is None else broker
    if url is None:
        from mtor_cli.realm import running_url

        url = running_url()
    if url is None:
        output.fail("unreachable", "no broker is configured and the embedded realm is not running",
                    "pass --broker ws://HOST:PORT")
    try:
        data = http_get_json(url, "/v1/federation")
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    if json_out:
        output.print_json(data)
        return
    from mtor_cli.federation_view import status_table

    realm = data.get("realm") or {}
    console = output.out_console()
    console.print(f"[bold]{url}[/bold]  realm {realm.get('name', '?')}  key {realm.get('address') or '-'}")
    console.print(status_table(data.get("peers") or []))


RPC_HELP = "JSON-RPC URL of the chain (default: $MTOR_CHAIN_RPC, the realm ledger's, else the embedded chain)."


@group.command("fund")
def fund(
    amount: str = typer.Argument(..., help="$9000 to escrow for what this realm owes its peers, e.g. 5."),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Escrow $9000 on this realm's RealmLedger for its peer realms to claim from.

    The tokens come from the realm key's address (on a dev chain the faucet
    tops it up). Peers claim what this realm signed it owes them. What is
    left comes back to the realm key through the contract's `startExit` and,
    after the exit window (the peers' time to claim), `finishRealmExit`.

    Example:

      mtor federation fund 5 --db /srv/mtor/broker.db
    """
    from mtor_cli.commands.ledger import guarded, open_ledger
    from mtor_cli.federation_settle import fund as run

    units = money.parse(amount, "AMOUNT", allow_zero=False)
    realm_key = _realm_key(db)
    with guarded(), open_ledger(chain_rpc) as led:
        done = run(led, realm_key, units)
    if json_out:
        output.print_json({**done, **money.fields("funded", done["funded"]), **money.fields("escrow", done["escrow"])})
        return
    print(f"escrowed {money.fmt(units)} $9000 for this realm's peers on {done['ledger']} (tx {done['tx']}); "
          f"escrow now {money.fmt(done['escrow'])} $9000")


@group.command("settle")
def settle(
    name: str = typer.Argument(..., help="The peer's name (or key)."),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Settle with a peer on chain: claim what it signed it owes, record what it claimed.

    As the payee, this claims from the peer's realm escrow with the peer's
    latest signed cumulative total (only the difference to what was paid:
    settling twice pays nothing twice); its credit here is freed at once. As
    the payer, it records what the peer has claimed from this realm's escrow.
    A paid realm on the same token then credits what it was paid to its own
    ledger as the peer's payment, which backs its workers' earnings.

    Example:

      mtor federation settle other --chain-rpc http://127.0.0.1:8545
    """
    from mtor_cli.commands.ledger import guarded, open_ledger
    from mtor_cli.federation_settle import settle as run

    realm_key = _realm_key(db)
    store = _store(db)
    try:
        found = [p for p in store.peers() if p.name == name or p.address.lower() == name.lower()]
        if not found:
            output.fail("not_found", f"no pinned peer {name!r}", "list them with `mtor federation peer list`")
        with guarded(), open_ledger(chain_rpc) as led:
            done = run(led, store, found[0], realm_key)
    finally:
        store.close()
    payee, payer = done["as_payee"], done["as_payer"]
    if json_out:
        for part in (payee, payer, payee.get("credited", {})):
            for field in ("acknowledged", "amount", "paid", "escrow_left", "total"):
                if field in part:
                    part.update(money.fields(field, part[field]))
        output.print_json(done)
        return
    if "skipped" in payee:
        print(f"{name} owes: nothing to claim ({payee['skipped']})")
    else:
        what = f"claimed {money.fmt(payee['amount'])} $9000 (tx {payee['tx']})" if payee["tx"] else "nothing new"
        print(f"{name} owes: acknowledged {money.fmt(payee['acknowledged'])}, paid {money.fmt(payee['paid'])} $9000; "
              f"{what}; its escrow left {money.fmt(payee['escrow_left'])}")
        credited = payee.get("credited", {})
        if "skipped" in credited:
            print(f"not credited to this realm's ledger: {credited['skipped']}")
        elif credited:
            print(f"credited to this realm's ledger as {name}'s payment: {money.fmt(credited['amount'])} now, "
                  f"{money.fmt(credited['total'])} $9000 in all (backs the earnings of the workers who served it)")
    if "skipped" in payer:
        print(f"we owe {name}: {payer['skipped']}")
    else:
        print(f"we owe {name}: paid {money.fmt(payer['paid'])} $9000 from our escrow; "
              f"escrow left {money.fmt(payer['escrow_left'])}")


@group.command("certify")
def certify(
    url: str = typer.Argument(..., help="The realm to certify, ws(s)://HOST:PORT."),
    intent: str = typer.Option("chat", "--intent", help="The intent the tests ask for."),
    model: str | None = typer.Option(None, "--model", help="The model the tests ask for (default: any)."),
    prompt: str = typer.Option("Say hello.", "--prompt", help="What the synthetic users ask."),
    budget: float = typer.Option(
        20.0, "--budget", min=1.0, max=600.0, help="Seconds each test may take at most (the whole run: 4x)."
    ),
    json_out: bool = options.json_option(),
) -> None:
    """Certify any realm, as anyone: health, fairness, throughput and failover.

    A bounded run with synthetic users (fresh keys): health (it answers,
    a healthy worker serves the intent, one request completes); fairness
    (a light user's request is not stuck behind a heavy user's backlog);
    throughput (requests in flight complete); failover (a client that drops
    mid-request and resubmits gets its answer, charged once). Prints a
    report with pass/fail per test; exits 1 if any failed.

    Example:

      mtor federation certify wss://other-realm:8765 --intent chat --budget 30
    """
    import asyncio

    from mtor_cli.certify import certify as run
    from mtor_cli.client import RealmError, check_url

    try:
        check_url(url)
    except RealmError as exc:
        output.fail("usage", exc.message, exc.hint)

    def progress(name: str) -> None:
        if not json_out:
            output.note(f"certify: {name} ...")

    report = asyncio.run(run(url, intent=intent, model=model, prompt=prompt, budget_s=budget, progress=progress))
    if json_out:
        output.print_json(report)
    else:
        from mtor_cli.federation_view import certify_table

        output.out_console().print(certify_table(report))
    if not report["passed"]:
        raise SystemExit(output.EXIT_FAILED)
