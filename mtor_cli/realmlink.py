"""The realm you use, seen from your own machine: what it is, and its chain.

Every money command finds the realm the way `mtor ask` does (--broker,
$MTOR_BROKER, the config file, else the embedded realm), asks it what it is
(``GET /v1/realm``: paid or free, and the chain it settles on), reads the
caller's books over signed requests (:func:`mtor_cli.signed.call`), and sends
the caller's own transactions to *that* chain only: :func:`open_chain` checks
the chain id and that the realm's contracts are there before anything is
signed. The realm relays its chain's JSON-RPC (``/v1/chain/rpc``) unless it
names a public endpoint, so a realm on its embedded dev chain works too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtor_cli.client import CA_ENV, RealmError, http_url

if TYPE_CHECKING:
    from ledger.chain import Chain


@dataclass(frozen=True)
class RealmChain:
    chain_id: int
    name: str
    token: str
    ledger: str
    operator: str
    dev: bool
    faucet: bool
    rpc: str  # the JSON-RPC URL users send to: the realm's public one, else its relay


@dataclass(frozen=True)
class Realm:
    url: str
    name: str
    paid: bool
    chain: RealmChain | None

    def require_chain(self) -> RealmChain:
        """The chain of a paid realm; RealmError('free_realm') for a free one."""
        if self.chain is None:
            raise RealmError(
                "free_realm",
                f"the realm at {self.url} is free: it keeps no $9000 books",
                "nothing is charged there, so there is nothing to deposit, refund or earn",
            )
        return self.chain


def discover(url: str) -> Realm:
    """What the realm at ``url`` is (``GET /v1/realm``); raises RealmError."""
    from mtor_cli.signed import call

    data = call(url, "GET", "/v1/realm", signed=False)
    chain = data.get("chain")
    return Realm(
        url=url,
        name=str(data.get("realm", "")),
        paid=bool(data.get("paid")),
        chain=None
        if not chain
        else RealmChain(
            chain_id=int(chain["chain_id"]),
            name=str(chain.get("name", "")),
            token=str(chain["token"]),
            ledger=str(chain["ledger"]),
            operator=str(chain.get("operator", "")),
            dev=bool(chain.get("dev")),
            faucet=bool(chain.get("faucet")),
            rpc=str(chain.get("public_rpc") or http_url(url, "/v1/chain/rpc")),
        ),
    )


def open_chain(chain: RealmChain, rpc: str | None = None) -> Chain:
    """A connection to the realm's chain through ``rpc`` (default: the realm's own
    endpoint), refused unless it is the realm's chain with the realm's contracts on it."""
    from ledger.chain import Chain
    from ledger.errors import LedgerError

    url = rpc or chain.rpc
    try:
        conn = Chain.connect(url, **_tls(url))
    except LedgerError as exc:
        raise RealmError(exc.code, exc.message, exc.hint) from None
    if conn.chain_id != chain.chain_id:
        conn.close()
        raise RealmError(
            "wrong_chain",
            f"{url} is chain {conn.chain_id}, but the realm settles on chain {chain.chain_id}",
            "leave out --chain-rpc to use the realm's own endpoint, or give a JSON-RPC URL of "
            f"chain {chain.chain_id}",
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


def contracts(conn: Chain, chain: RealmChain) -> tuple[Any, Any]:
    """(token, ledger) contract handles on an opened chain."""
    return conn.contract("NineThousand", chain.token), conn.contract("RealmLedger", chain.ledger)


def _tls(url: str) -> dict[str, Any]:
    """Trust $MTOR_CA_FILE for an https endpoint, as for the broker itself."""
    ca = os.environ.get(CA_ENV)
    return {"verify": ca} if ca and url.startswith("https:") else {}
