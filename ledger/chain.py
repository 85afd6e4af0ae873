"""The chain client: web3 over the embedded dev chain or any JSON-RPC endpoint.

:class:`Chain` sends locally signed transactions (the user's or the
operator's key; nothing needs an unlocked node account), decodes reverts into
the contract's error names, and refuses a chain or contract that is not the
one the realm recorded (:class:`Deployment`). On a dev chain (the embedded
one, or a node with unlocked accounts such as ``hardhat node``) it pays the
gas of new accounts from the node's first account.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ledger.errors import ChainError

DEV_CHAIN_IDS = frozenset((31337, 1337, 131277322940537))
GAS_TOPUP_WEI = 10 * 10**18
MIN_GAS_WEI = 10**17
RPC_TIMEOUT_S = 10.0
# No transaction of the realm may need more gas than this: under the 16.7M
# per-transaction cap of EIP-7825, whatever the chain's block gas limit.
GAS_CAP = 15_000_000


@cache
def artifact(name: str) -> dict[str, Any]:
    """ABI + bytecode shipped in ledger/artifacts (compiled by `npx hardhat export-artifacts`)."""
    return json.loads(resources.files("ledger").joinpath("artifacts", f"{name}.json").read_text())


@cache
def _error_selectors() -> dict[bytes, dict[str, Any]]:
    from eth_utils import function_signature_to_4byte_selector

    out: dict[bytes, dict[str, Any]] = {}
    for name in ("NineThousand", "RealmLedger"):
        for item in artifact(name)["abi"]:
            if item.get("type") == "error":
                sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
                out[function_signature_to_4byte_selector(sig)] = item
    return out


def decode_revert(data: bytes | str | None) -> str | None:
    """``0x<selector><args>`` of a custom error -> ``"Name(arg=value, ...)"``."""
    if data is None:
        return None
    if isinstance(data, str):
        text = data.strip()
        start = text.find("0x")
        if start < 0:
            return None
        words = text[start + 2 :].split()
        text = words[0].rstrip("'\",)") if words else ""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return None
    else:
        raw = data
    item = _error_selectors().get(raw[:4]) if len(raw) >= 4 else None
    if item is None:
        return None
    from eth_abi import decode

    try:
        values = decode([i["type"] for i in item["inputs"]], raw[4:])
    except Exception:  # malformed revert data: the name alone still helps
        return item["name"]
    from eth_utils import to_checksum_address

    shown = [to_checksum_address(v) if i["type"] == "address" else v for i, v in zip(item["inputs"], values, strict=False)]
    args = ", ".join(f"{i['name']}={v}" for i, v in zip(item["inputs"], shown, strict=False))
    return f"{item['name']}({args})"


DEPLOYMENT_VERSION = 2


@dataclass(frozen=True)
class Deployment:
    """Where the realm's contracts live and which key does what: recorded by `mtor chain deploy`."""

    chain_id: int
    token: str
    ledger: str
    owner: str  # owns the token (mints, capped) and the ledger (rotates keys, withdraws the fee)
    settler: str  # posts redemptions and epochs
    voucher_signer: str  # signs refund vouchers
    block: int
    exit_window: int  # seconds between startExit and finishExit
    supply_cap: int
    dev: bool  # a chain whose node pays gas: faucet and welcome grants
    rpc: str | None = None  # None: the embedded chain
    version: int = DEPLOYMENT_VERSION

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    def terms(self) -> Any:
        from ledger.authorisation import Terms

        return Terms(self.chain_id, self.ledger)

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise ChainError("bad_deployment", f"{path} is corrupt: {exc}", "run `mtor chain deploy`") from None
        if not isinstance(data, dict):
            raise ChainError("bad_deployment", f"{path} is not a deployment record", "run `mtor chain deploy`")
        return data

    @classmethod
    def load(cls, path: Path) -> Deployment | None:
        data = cls.read(path)
        if data is None:
            return None
        if data.get("version", 1) != DEPLOYMENT_VERSION:
            raise ChainError(
                "old_deployment",
                f"{path} records version {data.get('version', 1)} contracts; this mtor needs version"
                f" {DEPLOYMENT_VERSION} (user-signed spending, claims, exits)",
                "settle and refund with the mtor that deployed them, then deploy afresh in a new realm"
                " (MTOR_HOME) with `mtor chain deploy`",
            )
        from eth_utils import to_checksum_address

        try:
            for key in ("token", "ledger", "owner", "settler", "voucher_signer"):
                data[key] = to_checksum_address(data[key])
            return cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(
                "bad_deployment", f"{path} is not a deployment record: {exc}", "run `mtor chain deploy`"
            ) from None


class Chain:
    """One connection to a chain; a context manager (the embedded chain is locked while open)."""

    def __init__(self, w3: Any, *, rpc: str | None, embedded: Any = None, gas_cap: int = GAS_CAP) -> None:
        self.w3 = w3
        self.rpc = rpc
        self.gas_cap = gas_cap
        self._embedded = embedded
        try:
            self.chain_id = int(w3.eth.chain_id)
        except Exception as exc:
            self.close()
            raise unreachable(rpc, exc) from None
        try:
            self._unlocked = list(w3.eth.accounts)
        except Exception:  # public endpoints may refuse eth_accounts: no unlocked accounts then
            self._unlocked = []

    @classmethod
    def embedded(cls, path: Path, gas_cap: int = GAS_CAP) -> Chain:
        from ledger.evmstore import EmbeddedChain

        emb = EmbeddedChain(path)
        return cls(emb.w3, rpc=None, embedded=emb, gas_cap=gas_cap)

    @classmethod
    def connect(
        cls, url: str, timeout_s: float = RPC_TIMEOUT_S, gas_cap: int = GAS_CAP, verify: str | bool = True
    ) -> Chain:
        """``verify``: a CA bundle to trust for https (a self-signed realm's relay)."""
        from web3 import HTTPProvider, Web3

        if not url.startswith(("http://", "https://")):
            raise ChainError(
                "bad_rpc", f"unsupported chain RPC URL {url!r}", "use an http:// or https:// JSON-RPC URL"
            )
        w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s, "verify": verify}))
        return cls(w3, rpc=url, gas_cap=gas_cap)

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None

    @property
    def dev(self) -> bool:
        """A chain whose node pays gas and where the faucet makes sense."""
        return self._embedded is not None or (self.chain_id in DEV_CHAIN_IDS and bool(self._unlocked))

    @property
    def name(self) -> str:
        return "embedded" if self._embedded is not None else str(self.rpc)

    # --- reads ------------------------------------------------------------------

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except ChainError:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise unreachable(self.rpc, exc) from None
            raise

    def head(self) -> int:
        return int(self._call(lambda: self.w3.eth.block_number))

    def timestamp(self) -> int:
        return int(self._call(lambda: self.w3.eth.get_block("latest")["timestamp"]))

    def eth_balance(self, address: str) -> int:
        return int(self._call(lambda: self.w3.eth.get_balance(address)))

    def contract(self, name: str, address: str) -> Any:
        return self.w3.eth.contract(address=address, abi=artifact(name)["abi"])

    def mine(self, blocks: int = 1) -> None:
        """Dev chains: advance the head (confirmations in tests and demos)."""
        if self._embedded is not None:
            self._embedded.mine(blocks)
        else:
            self._call(lambda: self.w3.provider.make_request("hardhat_mine", [hex(blocks)]))

    def time_travel(self, seconds: int) -> None:
        """Dev chains: mine a block ``seconds`` later (exit windows in tests and demos)."""
        if self._embedded is not None:
            self._embedded.time_travel(seconds)
        else:
            self._call(lambda: self.w3.provider.make_request("evm_increaseTime", [seconds]))
            self._call(lambda: self.w3.provider.make_request("evm_mine", []))

    # --- transactions -----------------------------------------------------------

    def ensure_gas(self, address: str) -> None:
        """Give a new account gas money on a dev chain; elsewhere say what is missing."""
        if self.eth_balance(address) >= MIN_GAS_WEI:
            return
        if not self.dev:
            raise ChainError(
                "no_gas",
                f"{address} has no ETH for gas on chain {self.chain_id}",
                f"send some ETH to {address} on this chain, then retry",
            )
        funder = self._unlocked[0]
        self._call(
            lambda: self.w3.eth.wait_for_transaction_receipt(
                self.w3.eth.send_transaction({"from": funder, "to": address, "value": GAS_TOPUP_WEI}),
                timeout=60,
            )
        )

    def transact(self, account: Any, fn: Any, *, what: str) -> Any:
        """Sign ``fn`` (a bound contract function) with ``account``, send it, wait for its receipt.

        Refuses (``over_gas_cap``, nothing sent) a transaction that needs more
        than the realm's gas cap: callers split the work instead.
        """
        self.ensure_gas(account.address)

        def build() -> Any:
            return fn.build_transaction(
                {
                    "from": account.address,
                    "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                    "chainId": self.chain_id,
                }
            )

        try:
            tx = build()
        except Exception as exc:
            raise self._refused(exc, what) from None
        needed = int(tx["gas"])
        if needed > self.gas_cap:
            raise ChainError(
                "over_gas_cap",
                f"{what} needs {needed:,} gas, over the realm's cap of {self.gas_cap:,} per transaction",
                "split it into smaller transactions",
            )
        block_limit = int(self._call(lambda: self.w3.eth.get_block("latest")["gasLimit"]))
        tx["gas"] = min(needed * 6 // 5 + 20_000, self.gas_cap, block_limit)
        try:
            signed = account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:
            raise self._refused(exc, what) from None
        if receipt["status"] != 1:
            raise ChainError("tx_reverted", f"{what} failed on chain (tx {receipt['transactionHash'].to_0x_hex()})")
        return receipt

    def _refused(self, exc: BaseException, what: str) -> ChainError:
        if isinstance(exc, ChainError):
            return exc
        if _is_connection_error(exc):
            return unreachable(self.rpc, exc)
        reason = _revert_reason(exc)
        return ChainError("tx_reverted", f"{what} was refused by the chain: {reason}", _hint_for(reason))

    def deploy(self, account: Any, name: str, *args: Any) -> tuple[str, int]:
        """Deploy an artifact; returns (address, block)."""
        art = artifact(name)
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = self.transact(account, factory.constructor(*args), what=f"deploying {name}")
        return receipt["contractAddress"], int(receipt["blockNumber"])


def unreachable(rpc: str | None, exc: BaseException) -> ChainError:
    where = rpc or "the embedded chain"
    return ChainError(
        "chain_unreachable",
        f"cannot reach the chain at {where}: {type(exc).__name__}",
        "check that the node is running and the URL is right (--chain-rpc)",
    )


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


def _revert_reason(exc: BaseException) -> str:
    # web3 puts the revert data in .data (hardhat), eth-tester raw bytes in args
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (getattr(seen, "data", None), getattr(seen, "message", None), *seen.args, str(seen)):
            name = decode_revert(candidate) if isinstance(candidate, (str, bytes)) else None
            if name:
                return name
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."


def _hint_for(reason: str) -> str:
    hints = {
        "NothingToClaim": "everything settled for you is claimed; see `mtor worker earnings`",
        "BadProof": "the realm settled a new epoch meanwhile: claim again for a fresh proof",
        "InsufficientDeposit": "check your deposit with `mtor wallet`",
        "ERC20InsufficientBalance": "get tokens first (`mtor wallet faucet` on a dev chain)",
        "ERC20ExceededCap": "the token's supply cap is reached",
        "FaucetDisabled": "this chain has no faucet; buy or receive $9000 instead",
        "NotSettler": "only the realm's settler key posts redemptions and epochs",
        "BadEpoch": "the chain and the journal disagree on the epoch; run `mtor ledger audit`",
        "Unbacked": "the realm must cover what it could not collect before it settles; see `mtor ledger audit`",
        "BadVoucher": "ask the realm for a new refund voucher",
        "VoucherExpired": "ask the realm for a new refund voucher",
        "ExitPending": "your exit is running: `mtor wallet exit --finish` once the window has passed",
        "ExitNotReady": "the realm's challenge window has not passed yet; try again later",
        "NoExit": "start an exit first with `mtor wallet exit`",
    }
    for name, hint in hints.items():
        if reason.startswith(name):
            return hint
    return "run `mtor ledger audit` to compare the journal with the chain"
