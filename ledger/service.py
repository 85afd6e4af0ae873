"""One realm's ledger, opened from its data dir: journal, prices, chain, operator.

``<data>/ledger/`` holds ``journal.db`` (the double-entry journal),
``chain.sqlite`` (the embedded dev chain, when no RPC is used),
``deployment.json`` (chain id, contract addresses, RPC URL) and
``operator.key`` (the realm operator's key, mode 0600: it settles epochs,
signs refund vouchers and receives the realm fee).

Everything that talks to the chain goes through :meth:`Ledger.session`, which
opens the chain (locking the embedded one), checks that it is the recorded
chain and that the recorded contracts are there, and closes it again, so the
realm and `mtor` commands in other processes can take turns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import accounts as A
from ledger import audit as audit_mod
from ledger import watcher
from ledger.billing import RealmBilling
from ledger.errors import ChainError, LedgerError
from ledger.journal import CommitMode, Journal
from ledger.pricing import PriceTable
from ledger.settlement import Epoch, Settler
from ledger.units import ONE, format_amount

ENV_RPC = "MTOR_CHAIN_RPC"
VOUCHER_TTL_S = 3600


@dataclass
class LedgerConfig:
    data_dir: Path
    chain_rpc: str | None = None  # None: $MTOR_CHAIN_RPC, then the recorded deployment, then embedded
    confirmations: int = 0
    epoch_seconds: float = 60.0
    epoch_queries: int = 1000
    pricing_file: Path | None = None
    faucet_amount: int = 1000 * ONE  # dev deployments only
    welcome_grant: int = 100 * ONE  # dev chains only; 0 turns it off

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / "ledger"


@dataclass
class Session:
    """An open chain with the realm's contracts on it."""

    chain: Any
    deployment: Any
    token: Any
    ledger: Any
    operator: Any  # LocalAccount


class Ledger:
    def __init__(self, config: LedgerConfig, *, commit: CommitMode = "each") -> None:
        self.config = config
        config.root.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.root / "journal.db", commit=commit)
        self.prices = PriceTable.load(config.pricing_file)
        self.settler = Settler(
            self.journal, epoch_seconds=config.epoch_seconds, epoch_queries=config.epoch_queries
        )
        self._operator: Any = None

    def close(self) -> None:
        self.journal.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- files -----------------------------------------------------------------------

    @property
    def deployment_file(self) -> Path:
        return self.config.root / "deployment.json"

    @property
    def chain_file(self) -> Path:
        return self.config.root / "chain.sqlite"

    def deployment(self) -> Any:
        from ledger.chain import Deployment

        return Deployment.load(self.deployment_file)

    @property
    def operator(self) -> Any:
        if self._operator is None:
            self._operator = load_or_create_key(self.config.root / "operator.key")
        return self._operator

    def rpc_url(self) -> str | None:
        if self.config.chain_rpc:
            return self.config.chain_rpc
        if os.environ.get(ENV_RPC):
            return os.environ[ENV_RPC]
        dep = self.deployment()
        return dep.rpc if dep is not None else None

    # --- chain sessions ----------------------------------------------------------------

    def _open_chain(self) -> Any:
        from ledger.chain import Chain

        url = self.rpc_url()
        return Chain.connect(url) if url else Chain.embedded(self.chain_file)

    @contextmanager
    def session(self, *, deploy_if_missing: bool = True) -> Iterator[Session]:
        chain = self._open_chain()
        try:
            dep = self.deployment()
            if dep is None:
                if not (deploy_if_missing and chain.rpc is None):
                    raise ChainError(
                        "not_deployed",
                        f"the realm has no contracts on {chain.name}",
                        "run `mtor chain deploy`" + (f" --chain-rpc {chain.rpc}" if chain.rpc else ""),
                    )
                dep = self._deploy(chain)
            yield self._check(chain, dep)
        finally:
            chain.close()

    def _check(self, chain: Any, dep: Any) -> Session:
        if chain.chain_id != dep.chain_id:
            raise ChainError(
                "wrong_chain",
                f"{chain.name} is chain {chain.chain_id}, but the realm's contracts are on chain {dep.chain_id}",
                "use the RPC URL the realm deployed to (see `mtor wallet`) or `mtor chain deploy` afresh",
            )
        token = chain.contract("NineThousand", dep.token)
        ledger = chain.contract("RealmLedger", dep.ledger)
        try:
            ok = (
                chain._call(lambda: chain.w3.eth.get_code(dep.ledger)) != b""
                and chain._call(lambda: token.functions.symbol().call()) == "9000"
                and chain._call(lambda: ledger.functions.token().call()) == dep.token
                and chain._call(lambda: ledger.functions.operator().call()) == dep.operator
            )
        except ChainError:
            raise
        except Exception:  # no code, or another contract's ABI: calls fail to decode
            ok = False
        if not ok:
            raise ChainError(
                "wrong_contract",
                f"no MTOR RealmLedger at {dep.ledger} (token {dep.token}) on {chain.name}",
                "the node was reset or the address is wrong; run `mtor chain deploy`",
            )
        return Session(chain, dep, token, ledger, self.operator)

    def deploy(self, *, force: bool = False) -> Any:
        """`mtor chain deploy`: deploy both contracts and record them."""
        existing = self.deployment()
        if existing is not None and not force:
            raise ChainError(
                "already_deployed",
                f"the realm already has contracts on chain {existing.chain_id} (ledger {existing.ledger})",
                "pass --force to deploy afresh (only on a realm whose journal is empty)",
            )
        if existing is not None and self.journal.last_txn_id():
            raise ChainError(
                "journal_not_empty",
                "the journal already records money on the deployed contracts",
                "start a new realm (MTOR_HOME) to use other contracts",
            )
        chain = self._open_chain()
        try:
            return self._deploy(chain)
        finally:
            chain.close()

    def _deploy(self, chain: Any) -> Any:
        from ledger.chain import Deployment

        op = self.operator
        faucet = self.config.faucet_amount if chain.dev else 0
        token, block = chain.deploy(op, "NineThousand", op.address, faucet)
        ledger, _ = chain.deploy(op, "RealmLedger", token, op.address)
        dep = Deployment(chain.chain_id, token, ledger, op.address, block, chain.rpc)
        dep.save(self.deployment_file)
        return dep

    # --- money moves on chain ---------------------------------------------------------------

    def sync(self, session: Session | None = None) -> watcher.SyncReport:
        if session is None:
            with self.session() as s:
                return watcher.sync(self.journal, s, self.config.confirmations)
        return watcher.sync(self.journal, session, self.config.confirmations)

    def faucet(self, account: Any) -> int:
        """Dev chains: mint test tokens to ``account``; returns its token balance."""
        with self.session() as s:
            if not s.chain.dev or int(s.token.functions.faucetAmount().call()) == 0:
                raise ChainError(
                    "no_faucet",
                    f"chain {s.chain.chain_id} has no faucet",
                    "the faucet exists on dev chains only; get $9000 from someone who has it",
                )
            s.chain.transact(account, s.token.functions.faucet(), what="the faucet")
            return int(s.token.functions.balanceOf(account.address).call())

    def deposit(self, account: Any, amount: int) -> dict[str, Any]:
        """Escrow ``amount`` of the account's tokens; credited once confirmed."""
        _positive(amount)
        with self.session() as s:
            have = int(s.token.functions.balanceOf(account.address).call())
            if have < amount:
                raise LedgerError(
                    "insufficient_tokens",
                    f"{account.address} holds {format_amount(have)} $9000 in its wallet,"
                    f" less than {format_amount(amount)}",
                    "get tokens first (`mtor wallet faucet` on a dev chain)",
                )
            allowance = int(s.token.functions.allowance(account.address, s.deployment.ledger).call())
            if allowance < amount:
                s.chain.transact(account, s.token.functions.approve(s.deployment.ledger, amount), what="approve")
            rc = s.chain.transact(account, s.ledger.functions.deposit(amount), what="the deposit")
            report = watcher.sync(self.journal, s, self.config.confirmations)
        return {
            "tx_hash": rc["transactionHash"].to_0x_hex(),
            "credited": any(c["kind"] == "deposit" and c["address"] == account.address for c in report.credited),
            "confirmations": self.config.confirmations,
        }

    def welcome(self, address: str) -> bool:
        """Dev realms: a new user's first deposit, paid by the realm (once per address)."""
        grant = self.config.welcome_grant
        if grant <= 0 or self.journal.get("welcome", address) is not None:
            return False
        with self.session() as s:
            if not s.chain.dev:
                return False
            op = self.operator
            s.chain.transact(op, s.token.functions.mint(op.address, grant), what="minting the welcome grant")
            s.chain.transact(op, s.token.functions.approve(s.deployment.ledger, grant), what="approve")
            s.chain.transact(op, s.ledger.functions.depositFor(address, grant), what="the welcome deposit")
            watcher.sync(self.journal, s, 0 if s.chain.rpc is None else self.config.confirmations)
        self.journal.post("welcome", address, (), payer=address, amount=grant)
        return True

    def withdraw(self, account: Any, amount: int | None = None) -> dict[str, Any]:
        """A worker takes settled earnings out to its wallet (all of them by default)."""
        with self.session() as s:
            _, earned = s.ledger.functions.accountOf(account.address).call()
            if amount is None:
                amount = int(earned)
            _positive(amount)
            if amount > earned:
                pending = self.journal.balance(A.worker(account.address)) - int(earned)
                raise LedgerError(
                    "insufficient_earnings",
                    f"{format_amount(amount)} $9000 is more than the {format_amount(int(earned))}"
                    f" settled for {account.address}",
                    "earnings become withdrawable once settled: `mtor ledger settle`"
                    + (f" ({format_amount(pending)} $9000 wait for settlement)" if pending > 0 else ""),
                )
            rc = s.chain.transact(account, s.ledger.functions.withdraw(amount), what="the withdrawal")
            watcher.sync(self.journal, s, 0 if s.chain.rpc is None else self.config.confirmations)
        return {"tx_hash": rc["transactionHash"].to_0x_hex(), "amount": amount}

    def refund(self, account: Any, amount: int | None = None) -> dict[str, Any]:
        """Unspent deposit back to the wallet: the realm reserves it and signs a voucher,
        then the user redeems the voucher on chain."""
        voucher = self.refund_voucher(account.address, amount)
        with self.session() as s:
            rc = s.chain.transact(
                account,
                s.ledger.functions.refund(voucher["amount"], voucher["deadline"], bytes.fromhex(voucher["signature"][2:])),
                what="the refund",
            )
            watcher.sync(self.journal, s, 0 if s.chain.rpc is None else self.config.confirmations)
        return {"tx_hash": rc["transactionHash"].to_0x_hex(), "amount": voucher["amount"]}

    def refund_voucher(self, user: str, amount: int | None = None) -> dict[str, Any]:
        """Reserve ``amount`` of ``user``'s unspent deposit (all of it by default) and
        sign the voucher that RealmLedger.refund pays out; the user sends it on chain."""
        with self.session() as s:
            watcher.sync(self.journal, s, self.config.confirmations)
            self._expire_vouchers(s)
            available = self.journal.balance(A.user(user))
            if amount is None:
                amount = available
            if amount > available:
                raise LedgerError(
                    "insufficient_funds",
                    f"{format_amount(amount)} $9000 is more than your unspent {format_amount(available)}",
                    "see `mtor wallet`",
                )
            _positive(amount)
            nonce = int(s.ledger.functions.refundNonce(user).call())
            ref = f"{user}:{nonce}"
            if self.journal.get("voucher", ref) is not None:
                raise LedgerError(
                    "voucher_outstanding", f"refund voucher {nonce} of {user} is not redeemed yet", "wait for it"
                )
            deadline = s.chain.timestamp() + VOUCHER_TTL_S
            # Reserved before the voucher exists: no query can spend it meanwhile. If the
            # redemption fails, the reservation returns once the voucher expires.
            self.journal.post(
                "voucher",
                ref,
                ((A.user(user), -amount), (A.refund(user), amount)),
                payer=user,
                amount=amount,
                memo=json.dumps({"nonce": nonce, "deadline": deadline}),
            )
            signature = sign_voucher(self.operator, s.chain.chain_id, s.deployment.ledger, user, amount, nonce, deadline)
        return {"amount": amount, "nonce": nonce, "deadline": deadline, "signature": "0x" + signature.hex()}

    def _expire_vouchers(self, s: Session) -> None:
        """Give back reservations of vouchers that can no longer be redeemed."""
        now = s.chain.timestamp()
        for txn in self.journal.execute(
            "SELECT ref, payer, amount, memo FROM txns WHERE kind = 'voucher'"
            " AND ref NOT IN (SELECT ref FROM txns WHERE kind = 'voucher_expired')"
        ).fetchall():
            ref, user, amount, memo = txn[0], txn[1], int(txn[2]), json.loads(txn[3])
            used = int(s.ledger.functions.refundNonce(user).call()) > memo["nonce"]
            if not used and memo["deadline"] < now:
                self.journal.post(
                    "voucher_expired", ref, ((A.refund(user), -amount), (A.user(user), amount)), payer=user, amount=amount
                )

    # --- settlement and audit ------------------------------------------------------------------

    def settle(self) -> list[Epoch]:
        # The epoch is fixed in the journal first, so that it is the same epoch
        # whenever the chain can be reached.
        self.settler.close_epoch()
        with self.session() as s:
            return self.settler.settle(s)

    def audit(self, receipt: str | None = None) -> audit_mod.AuditReport:
        with self.session() as s:
            watcher.sync(self.journal, s, self.config.confirmations)
            report = audit_mod.audit(self.journal, self.settler, s)
            if receipt is not None:
                report.proof = audit_mod.prove(self.journal, self.settler, s, receipt)
            return report

    def billing(self, **kwargs: Any) -> RealmBilling:
        return RealmBilling(self.journal, self.prices, **kwargs)

    # --- views -------------------------------------------------------------------------------

    def wallet(self, address: str, *, chain: bool = True) -> dict[str, Any]:
        j = self.journal
        out: dict[str, Any] = {
            "address": address,
            "available": j.balance(A.user(address)),
            "held": j.balance(A.hold(address)),
            "refund_pending": j.balance(A.refund(address)),
            "earned": j.balance(A.worker(address)),
        }
        if chain:
            with self.session() as s:
                watcher.sync(self.journal, s, self.config.confirmations)
                out["available"] = j.balance(A.user(address))
                dep, earned = s.ledger.functions.accountOf(address).call()
                out["chain"] = {
                    "name": s.chain.name,
                    "chain_id": s.chain.chain_id,
                    "ledger": s.deployment.ledger,
                    "token": s.deployment.token,
                    "tokens": int(s.token.functions.balanceOf(address).call()),
                    "deposit": int(dep),
                    "earned": int(earned),
                    "dev": s.chain.dev,
                }
        return out


def _positive(amount: int) -> None:
    if amount <= 0:
        raise LedgerError("nothing_to_move", "the amount is 0: there is nothing to move", "see `mtor wallet`")


def sign_voucher(
    operator: Any, chain_id: int, ledger: str, user: str, amount: int, nonce: int, deadline: int
) -> bytes:
    """The operator's EIP-712 signature that RealmLedger.refund checks."""
    from eth_account.messages import encode_typed_data

    msg = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Refund": [
                    {"name": "user", "type": "address"},
                    {"name": "amount", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Refund",
            "domain": {"name": "MTOR RealmLedger", "version": "1", "chainId": chain_id, "verifyingContract": ledger},
            "message": {"user": user, "amount": amount, "nonce": nonce, "deadline": deadline},
        }
    )
    return bytes(operator.sign_message(msg).signature)


def load_or_create_key(path: Path) -> Any:
    """An eth-account key in a 0600 file (created on first use)."""
    from eth_account import Account

    if path.exists():
        return Account.from_key(path.read_text().strip())
    acct = Account.create()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(acct.key.hex() + "\n")
    return acct

