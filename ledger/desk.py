"""The realm's money desk: what a paid realm tells and does for the people who use it.

A user of someone else's realm has only that realm's URL. Through the broker's
REST routes (broker/money_rest.py) the desk answers:

- for anyone: which chain the realm settles on (chain id, token and ledger
  addresses, which key is which, the exit window, the signing domain, and
  where its JSON-RPC can be reached: the realm relays its chain's JSON-RPC
  itself, so users of a realm on its embedded dev chain can transact too);
  the prices; each worker's earnings proof; each epoch's published receipts;
- for the caller's own address only: what the realm's books hold for it
  (spendable, held, earned, spent) and what its contracts hold (deposit,
  spent, claimed, the exit), a refund voucher, gas money on dev chains, and
  "look at the chain now" so a deposit the user just sent is credited at once.

Everything a user or worker does on chain (faucet, deposit, redeeming a
voucher, exit, claim) is that person's own transaction from their own `mtor`
(ledger.wallet): the desk never holds a user's key and signs nothing for
them but the voucher. Every method is blocking (it opens the chain or reads
files): the broker calls them from one worker thread, and the desk has its
own :class:`Ledger` (its own SQLite connection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger import accounts as A
from ledger import watcher
from ledger.errors import ChainError, LedgerError
from ledger.service import Ledger, LedgerConfig

# What the relay passes on: reading the chain and sending signed transactions.
# Nothing that would act as one of the node's own (unlocked) accounts.
RELAYED_METHODS = frozenset(
    {
        "web3_clientVersion",
        "net_version",
        "eth_chainId",
        "eth_blockNumber",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_getLogs",
        "eth_call",
        "eth_estimateGas",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_sendRawTransaction",
    }
)
BLOOM_BYTES = 256


class MoneyDesk:
    def __init__(self, config: LedgerConfig, *, public_rpc: str | None = None) -> None:
        """``public_rpc``: a JSON-RPC URL of the realm's chain that users can reach
        themselves (a public endpoint); without it they use the realm's relay."""
        self.ledger = Ledger(config)
        self.public_rpc = public_rpc
        self._chain: dict[str, Any] | None = None

    def close(self) -> None:
        self.ledger.close()

    # --- what anyone may read -------------------------------------------------------

    def chain(self) -> dict[str, Any]:
        """The chain the realm settles on and its contracts (read once: a deployment does not move)."""
        if self._chain is None:
            with self.ledger.session() as s:
                faucet = int(s.chain._call(lambda: s.token.functions.faucetAmount().call()))
                terms = self.ledger.public_terms()
                assert terms is not None  # the session found or made the deployment
                self._chain = {
                    **terms,
                    "name": s.chain.name,
                    "faucet": faucet > 0,
                    "public_rpc": self.public_rpc,
                }
        return dict(self._chain)

    def prices(self) -> dict[str, Any]:
        table = self.ledger.prices
        rows = [
            {"intent": r.intent, "unit": r.unit, "price": r.price, "typical_hold": r.cost(r.quote_units({}))}
            for r in table.rules.values()
        ]
        return {"fee_bps": table.fee_bps, "prices": rows}

    def proof(self, address: str) -> dict[str, Any]:
        """``address``'s cumulative earnings in the last settled root and its Merkle proof
        (anyone may send a worker's claim: the tokens go to the worker)."""
        return self.ledger.proof(address)

    def receipts(self, epoch: int) -> bytes:
        """Epoch ``epoch``'s published receipts file, so anyone can recompute its roots."""
        settler = self.ledger.settler
        path = settler.receipts_file(epoch)
        closed = settler.epoch(epoch)
        if closed is None:
            raise LedgerError("unknown_epoch", f"no epoch {epoch} has been closed", "see /v1/ledger/status")
        if not path.exists():  # closed by another machine's broker of the realm: the journal has it all
            settler.publish_missing(closed)
        return path.read_bytes()

    # --- one address's own -------------------------------------------------------------

    def wallet(self, address: str) -> dict[str, Any]:
        """The books and the contracts for ``address`` (deposits confirmed so far credited)."""
        return self.ledger.wallet(address)

    def earnings(self, address: str) -> dict[str, Any]:
        """What ``address`` earned as a worker: unclaimed, claimable now, claimed."""
        return self.ledger.earnings(address)

    def sync(self, tx: str | None = None) -> dict[str, Any]:
        """Book what the chain shows now (a deposit, claim, refund or exit just sent): what
        this look booked, and whether the journal holds transaction ``tx`` (whichever look
        booked it)."""
        with self.ledger.session() as s:
            credited = watcher.sync(self.ledger.journal, s, self.ledger.config.confirmations).credited
        seen = None
        if tx is not None:
            seen = self.ledger.journal.booked_chain_tx(tx)
        return {"credited": credited, "tx_credited": seen}

    def gas(self, address: str) -> dict[str, Any]:
        """Dev chains: the realm pays ``address``'s gas (its node's own test ETH)."""
        with self.ledger.session() as s:
            if not s.chain.dev:
                raise ChainError(
                    "no_gas",
                    f"chain {s.chain.chain_id} is not a dev chain: the realm pays no gas there",
                    f"send some ETH to {address} on chain {s.chain.chain_id}, then retry",
                )
            s.chain.ensure_gas(address)
            return {"address": address, "gas_wei": s.chain.eth_balance(address)}

    def refund_voucher(self, address: str, amount: int | None) -> dict[str, Any]:
        voucher = self.ledger.refund_voucher(address, amount)
        return {**voucher, "refund_pending": self.ledger.journal.balance(A.refund(address))}

    # --- the chain's JSON-RPC, relayed ----------------------------------------------------

    def rpc(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one JSON-RPC request on the realm's chain (allowed methods only)."""
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params") or []
        if not isinstance(method, str) or not isinstance(params, list):
            return _rpc_error(rid, -32600, "invalid request")
        if method not in RELAYED_METHODS:
            return _rpc_error(rid, -32601, f"{method} is not relayed by this realm")
        chain = self.ledger._open_chain()
        try:
            if chain.rpc is not None:  # a node: pass the request through as it is
                answer = chain.w3.provider.make_request(method, params)
                return {"jsonrpc": "2.0", "id": rid, **{k: v for k, v in answer.items() if k in ("result", "error")}}
            result = chain.w3.manager.request_blocking(method, params)
        except LedgerError as exc:
            return _rpc_error(rid, -32000, exc.message)
        except Exception as exc:  # the chain refused it: the caller sees why, as a node would say
            return _rpc_error(rid, -32000, str(exc) or type(exc).__name__)
        finally:
            chain.close()
        return {"jsonrpc": "2.0", "id": rid, "result": wire(result)}


def wire(value: Any, key: str = "") -> Any:
    """A web3 result in JSON-RPC's wire format: quantities and bytes as 0x-hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(BLOOM_BYTES, "big").hex()
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {k: wire(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire(v) for v in value]
    return value


def _rpc_error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
