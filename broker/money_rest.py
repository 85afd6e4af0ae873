"""HTTP for a realm's money, as its users see it from their own machines: every
REST route of the ledger is here.

For anyone: ``GET /v1/realm`` says what the realm is and, when it is paid, the
chain it settles on (chain id, contracts, which key is which, the exit window,
the signing domain, a public JSON-RPC URL if it names one); ``GET /v1/pricing``
what each intent costs; ``GET /v1/ledger/status`` the settlement upkeep;
``GET /v1/ledger/proof/<address>`` a worker's cumulative earnings and Merkle
proof under the last settled root; ``GET /v1/ledger/epochs/<n>`` epoch n's
published receipts. ``POST /v1/chain/rpc`` relays the chain's JSON-RPC (reads
and signed transactions only), so users of a realm on its embedded dev chain
can send their own transactions.

Everything about one address is a signed request (broker/signed.py) and answers
for the signer only: ``GET /v1/wallet``, ``GET /v1/earnings``, ``POST
/v1/wallet/sync``, ``POST /v1/wallet/refund`` (a voucher), ``POST
/v1/chain/gas`` (dev chains: the realm pays the signer's gas).

The work is the ledger's (``ledger.desk.MoneyDesk``, made by whoever starts the
broker: the broker imports nothing of the ledger). It is blocking, so it runs
on one thread of its own, never on the event loop; only the upkeep's status,
which the billing keeps, is read on the loop. A free realm has no desk: its
money routes say so with ``free_realm``. Amounts are strings of base units
(JSON readers lose precision past 2^53). Shapes: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import msgspec
from aiohttp import web

from broker.parts import Parts
from broker.protocol import rest_json
from broker.signed import SignatureRefused

log = logging.getLogger("mtor.broker.money")

# Keys whose values are amounts of $9000 in base units: sent as strings.
AMOUNT_KEYS = frozenset(
    {
        "available", "held", "refund_pending", "earned", "charged", "deposit", "spent", "claimed",
        "tokens", "unclaimed", "settled_total", "claimable", "awaiting_settlement", "cumulative",
        "amount", "price", "typical_hold", "gas_wei",
    }
)  # fmt: skip
ADDRESS_CHARS = 42
_STATUS = {
    "bad_signature": 401,
    "free_realm": 404,
    "not_settled": 404,
    "unknown_epoch": 404,
    "insufficient_funds": 409,
    "voucher_outstanding": 409,
    "not_deployed": 503,
}


class Desk(Protocol):
    """What the ledger's money desk offers (ledger.desk.MoneyDesk)."""

    def chain(self) -> dict[str, Any]: ...
    def prices(self) -> dict[str, Any]: ...
    def proof(self, address: str) -> dict[str, Any]: ...
    def receipts(self, epoch: int) -> bytes: ...
    def wallet(self, address: str) -> dict[str, Any]: ...
    def earnings(self, address: str) -> dict[str, Any]: ...
    def sync(self, tx: str | None = None) -> dict[str, Any]: ...
    def gas(self, address: str) -> dict[str, Any]: ...
    def refund_voucher(self, address: str, amount: int | None) -> dict[str, Any]: ...
    def rpc(self, request: dict[str, Any]) -> dict[str, Any]: ...
    def close(self) -> None: ...


class Teller:
    """Runs a desk's calls one at a time on its own thread (the desk is made there too:
    its SQLite connection belongs to that thread)."""

    def __init__(self, make_desk: Callable[[], Desk]) -> None:
        self._make = make_desk
        self._desk: Desk | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mtor-money")

    def _run(self, name: str, *args: Any) -> Any:
        if self._desk is None:
            self._desk = self._make()
        return getattr(self._desk, name)(*args)

    async def call(self, name: str, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, name, *args)

    def close(self) -> None:
        def close_desk() -> None:
            if self._desk is not None:
                self._desk.close()

        self._pool.submit(close_desk).result()
        self._pool.shutdown()


class _Refused(Exception):
    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def amounts_as_text(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: amounts_as_text(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [amounts_as_text(v, key) for v in value]
    if key in AMOUNT_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=rest_json(data), status=status, content_type="application/json")


def _error(code: str, message: str, hint: str = "") -> web.Response:
    return _json({"error": {"code": code, "message": message, "hint": hint}}, _STATUS.get(code, 400))


def routes(parts: Parts, teller: Teller | None) -> list[web.RouteDef]:
    """The money routes; ``teller`` is None in a free realm."""
    realm = parts.config.realm
    verifier = parts.verifier

    def free() -> _Refused:
        return _Refused(
            "free_realm", f"the realm {realm!r} is free: it keeps no $9000 books",
            "nothing is charged here; there is nothing to deposit or earn",
        )  # fmt: skip

    def handler(signed: bool = False, paid: bool = False) -> Callable[[Any], Any]:
        """``signed``: for the signer only; ``paid``: a free realm answers ``free_realm``."""

        def wrap(fn: Callable[..., Any]) -> Callable[[web.Request], Any]:
            async def run(request: web.Request) -> web.Response:
                try:
                    args: tuple[Any, ...] = (request,)
                    if signed:
                        args = (request, await verifier.verify(request))
                    if (signed or paid) and teller is None:
                        raise free()
                    answer = await fn(*args)
                    return answer if isinstance(answer, web.Response) else _json(amounts_as_text(answer))
                except SignatureRefused as exc:
                    return _error("bad_signature", exc.message, exc.hint)
                except _Refused as exc:
                    return _error(exc.code, exc.message, exc.hint)
                except Exception as exc:
                    code = getattr(exc, "code", None)
                    if isinstance(code, str) and isinstance(getattr(exc, "message", None), str):
                        return _error(code, exc.message, getattr(exc, "hint", ""))  # type: ignore[attr-defined]
                    log.exception("money request %s failed", request.path)
                    return _error("internal", f"the realm could not answer {request.path}", "see the broker's log")

            return run

        return wrap

    def desk() -> Teller:
        assert teller is not None
        return teller

    @handler()
    async def realm_info(_: web.Request) -> dict[str, Any]:
        chain = await desk().call("chain") if teller is not None else None
        return {"realm": realm, "paid": teller is not None, "chain": chain}

    @handler()
    async def pricing(_: web.Request) -> dict[str, Any]:
        if teller is None:
            return {"realm": realm, "paid": False, "fee_bps": 0, "prices": []}
        return {"realm": realm, "paid": True, **await desk().call("prices")}

    @handler(paid=True)
    async def status(_: web.Request) -> dict[str, Any]:
        if parts.billing is None:
            raise free()
        return parts.billing.status()

    @handler(paid=True)
    async def proof(request: web.Request) -> dict[str, Any]:
        address = request.match_info["address"]
        if len(address) != ADDRESS_CHARS or not address.startswith("0x"):
            raise _Refused("bad_params", f"{address!r} is not an address", "0x and 40 hex digits")
        return dict(await desk().call("proof", address))

    @handler(paid=True)
    async def receipts(request: web.Request) -> web.Response:
        try:
            epoch = int(request.match_info["epoch"])
        except ValueError:
            raise _Refused("bad_params", "the epoch is a number", "e.g. /v1/ledger/epochs/1") from None
        body = await desk().call("receipts", epoch)
        return web.Response(body=body, content_type="application/json")

    @handler(signed=True)
    async def wallet(_: web.Request, who: str) -> dict[str, Any]:
        return dict(await desk().call("wallet", who))

    @handler(signed=True)
    async def earnings(_: web.Request, who: str) -> dict[str, Any]:
        return dict(await desk().call("earnings", who))

    @handler(signed=True)
    async def sync(request: web.Request, who: str) -> dict[str, Any]:
        tx = (await _body(request)).get("tx")
        if tx is not None and not (isinstance(tx, str) and tx.startswith("0x") and len(tx) == 66):
            raise _Refused("bad_params", "tx must be a transaction hash", 'e.g. {"tx": "0x<64 hex digits>"}')
        looked = await desk().call("sync", tx)
        return {
            "credited": [c for c in looked["credited"] if c["address"] == who],
            "tx_credited": looked["tx_credited"],
            "wallet": await desk().call("wallet", who),
        }

    @handler(signed=True)
    async def gas(_: web.Request, who: str) -> dict[str, Any]:
        return dict(await desk().call("gas", who))

    @handler(signed=True)
    async def refund(request: web.Request, who: str) -> dict[str, Any]:
        body = await _body(request)
        raw = body.get("amount")
        if raw is not None and not (isinstance(raw, str) and raw.isdigit()):
            raise _Refused(
                "bad_params", "amount must be a string of base units", 'e.g. {"amount": "1000000000000000000"}'
            )
        return dict(await desk().call("refund_voucher", who, None if raw is None else int(raw)))

    async def chain_rpc(request: web.Request) -> web.Response:
        try:
            call = await _body(request)
        except _Refused as exc:
            return _json({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": exc.message}})
        if teller is None:
            return _json(
                {
                    "jsonrpc": "2.0",
                    "id": call.get("id"),
                    "error": {"code": -32601, "message": "a free realm has no chain"},
                }
            )
        return _json(await desk().call("rpc", call))

    return [
        web.get("/v1/realm", realm_info),
        web.get("/v1/pricing", pricing),
        web.get("/v1/ledger/status", status),
        web.get("/v1/ledger/proof/{address}", proof),
        web.get("/v1/ledger/epochs/{epoch}", receipts),
        web.get("/v1/wallet", wallet),
        web.get("/v1/earnings", earnings),
        web.post("/v1/wallet/sync", sync),
        web.post("/v1/wallet/refund", refund),
        web.post("/v1/chain/gas", gas),
        web.post("/v1/chain/rpc", chain_rpc),
    ]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(await request.read() or b"{}")
    except msgspec.DecodeError:
        raise _Refused("invalid_json", "the body is not JSON", "send a JSON object") from None
    if not isinstance(data, dict):
        raise _Refused("invalid_message", "the body must be a JSON object", "send a JSON object")
    return data
