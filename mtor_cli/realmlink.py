"""The realm you use, seen from your own machine: what it is, and its chain.

Every money command finds the realm the way `mtor ask` does (--broker,
$MTOR_BROKER, the config file, else the embedded realm), asks it what it is
(``GET /v1/realm``: paid or free, and the chain it settles on), reads the
caller's books over signed requests (:func:`mtor_cli.signed.call`), and sends
the caller's own transactions (ledger.wallet) to *that* chain only:
:func:`session` checks the chain id and that the realm's contracts are there
before anything is signed. The realm relays its chain's JSON-RPC
(``/v1/chain/rpc``) unless it names a public endpoint, so a realm on its
embedded dev chain works too.

A paid realm's answer is kept in the data dir (``realms/``): leaving a realm
(`mtor wallet exit`) must work when the realm is gone, and then the chain and
contracts it named are all the user needs, with a JSON-RPC URL of that chain.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtor_cli.client import CA_ENV, RealmError, http_url

if TYPE_CHECKING:
    from pathlib import Path

    from ledger.chain import Chain


@dataclass(frozen=True)
class RealmChain:
    chain_id: int
    name: str
    token: str
    ledger: str
    owner: str  # mints the token within its cap, rotates the other keys, takes the fee
    settler: str  # redeems authorisations and posts epochs
    voucher_signer: str  # signs refund vouchers
    exit_window_s: int  # how long an exit waits for the realm's last redemption
    dev: bool
    faucet: bool
    rpc: str  # the JSON-RPC URL users send to: the realm's public one, else its relay
    public_rpc: str | None  # the public one the realm names, if any


@dataclass(frozen=True)
class Realm:
    url: str
    name: str
    paid: bool
    chain: RealmChain | None
    remembered: bool = False  # unreachable now: what it said when it last answered

    def require_chain(self) -> RealmChain:
        """The chain of a paid realm; RealmError('free_realm') for a free one."""
        if self.chain is None:
            raise RealmError(
                "free_realm",
                f"the realm at {self.url} is free: it keeps no $9000 books",
                "nothing is charged there, so there is nothing to deposit, refund or earn",
            )
        return self.chain


@dataclass
class ChainSession:
    """The realm's chain and contracts, opened and checked: what ledger.wallet acts on."""

    chain: Chain
    token: Any
    ledger: Any


def discover(url: str, *, remembered: bool = False) -> Realm:
    """What the realm at ``url`` is (``GET /v1/realm``); raises RealmError.

    ``remembered``: when the realm is unreachable, what it said the last time it
    answered this user (a paid realm's chain does not move).
    """
    from mtor_cli.signed import call

    try:
        data = call(url, "GET", "/v1/realm", signed=False)
    except RealmError as exc:
        kept = _recall(url) if remembered and exc.code == "unreachable" else None
        if kept is None:
            raise
        return _realm(url, kept, remembered=True)
    if data.get("chain"):
        _remember(url, data)
    return _realm(url, data)


def _realm(url: str, data: dict[str, Any], remembered: bool = False) -> Realm:
    chain = data.get("chain")
    return Realm(
        url=url,
        name=str(data.get("realm", "")),
        paid=bool(data.get("paid")),
        remembered=remembered,
        chain=None
        if not chain
        else RealmChain(
            chain_id=int(chain["chain_id"]),
            name=str(chain.get("name", "")),
            token=str(chain["token"]),
            ledger=str(chain["ledger"]),
            owner=str(chain.get("owner", "")),
            settler=str(chain.get("settler", "")),
            voucher_signer=str(chain.get("voucher_signer", "")),
            exit_window_s=int(chain.get("exit_window_s") or 0),
            dev=bool(chain.get("dev")),
            faucet=bool(chain.get("faucet")),
            rpc=str(chain.get("public_rpc") or http_url(url, "/v1/chain/rpc")),
            public_rpc=chain.get("public_rpc") or None,
        ),
    )


def _kept(url: str) -> Path:
    from mtor_cli.paths import data_dir

    return data_dir() / "realms" / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"


def _remember(url: str, data: dict[str, Any]) -> None:
    path = _kept(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url, **data}))
        tmp.replace(path)
    except OSError:  # a read-only home: the commands still work while the realm answers
        pass


def _recall(url: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_kept(url).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("url") == url and data.get("chain") else None


def open_chain(chain: RealmChain, rpc: str | None = None) -> Chain:
    """A connection to the realm's chain through ``rpc`` (default: the realm's own
    endpoint), refused unless it is the realm's chain with the realm's contracts on it."""
    from ledger.chain import Chain
    from ledger.errors import LedgerError

    url = rpc or chain.rpc
    try:
        conn = Chain.connect(url, **_tls(url))
        found = conn.chain_id
    except LedgerError as exc:
        raise RealmError(exc.code, exc.message, exc.hint) from None
    if found != chain.chain_id:
        conn.close()
        raise RealmError(
            "wrong_chain",
            f"{url} is chain {found}, but the realm settles on chain {chain.chain_id}",
            f"leave out --chain-rpc to use the realm's own endpoint, or give a JSON-RPC URL of chain {chain.chain_id}",
        )
    for what, address in (("ledger", chain.ledger), ("token", chain.token)):
        if not conn._call(lambda a=address: conn.w3.eth.get_code(a)):
            conn.close()
            raise RealmError(
                "no_contract",
                f"chain {chain.chain_id} has no code at the realm's {what} address {address}",
                "the chain was reset, or the realm named the wrong contracts: tell its operator",
            )
    return conn


@contextmanager
def session(chain: RealmChain, rpc: str | None = None) -> Iterator[ChainSession]:
    """The realm's chain and contracts, checked (:func:`open_chain`), closed afterwards."""
    conn = open_chain(chain, rpc)
    try:
        yield ChainSession(conn, conn.contract("NineThousand", chain.token), conn.contract("RealmLedger", chain.ledger))
    finally:
        conn.close()


def _tls(url: str) -> dict[str, Any]:
    """Trust $MTOR_CA_FILE for an https endpoint, as for the broker itself."""
    ca = os.environ.get(CA_ENV)
    return {"verify": ca} if ca and url.startswith("https:") else {}
