"""One realm's ledger, opened from its data dir: journal, prices, chain, keys.

``<data>/ledger/`` holds ``journal.db`` (the double-entry journal),
``chain.sqlite`` (the embedded dev chain, when no RPC is used),
``deployment.json`` (chain id, contract addresses, which key is which, the RPC
URL), ``epochs/`` (each epoch's published receipts and earnings) and the
realm's three keys, each in its own file (mode 0600):

- ``owner.key`` owns the token (mints, never beyond its cap) and the
  RealmLedger (rotates the other two keys, withdraws the fee);
- ``settler.key`` posts redemptions and epochs (the upkeep uses it);
- ``voucher.key`` signs refund vouchers.

None of them can move a user's deposit without the user's signature, or a
worker's earnings.

Everything that talks to the chain goes through :meth:`Ledger.session`, which
opens the chain (locking the embedded one), checks that it is the recorded
chain and that the recorded contracts are there, and closes it again, so the
realm and `mtor` commands in other processes can take turns.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import accounts as A
from ledger import audit as audit_mod
from ledger import wallet as W
from ledger import watcher
from ledger.authorisation import Terms
from ledger.billing import RealmBilling
from ledger.chain import DEPLOYMENT_VERSION, GAS_CAP, Deployment
from ledger.errors import ChainError, LedgerError
from ledger.journal import CommitMode, open_journal
from ledger.pricing import PriceTable
from ledger.proofs import EarningsProofs
from ledger.settlement import Epoch, Settler
from ledger.units import ONE, format_amount

log = logging.getLogger("mtor.ledger")

ENV_RPC = "MTOR_CHAIN_RPC"
VOUCHER_TTL_S = 3600
DEV_EXIT_WINDOW_S = 10
EXIT_WINDOW_S = 86_400
DEV_SUPPLY_CAP = 2**128 - 1
SUPPLY_CAP = 10**9 * ONE
GRANTS_PER_TX = 400  # ~27k gas each: a batch stays well under the gas cap
BOUND_KEY = "deployment"  # the journal's meta: the contracts whose money it keeps


@dataclass
class LedgerConfig:
    data_dir: Path
    chain_rpc: str | None = None  # None: $MTOR_CHAIN_RPC, then the recorded deployment, then embedded
    confirmations: int = 0
    epoch_seconds: float = 60.0
    epoch_queries: int = 10_000  # receipts per epoch at most: a busy realm settles every 10,000 queries
    pricing_file: Path | None = None
    faucet_amount: int = 1000 * ONE  # dev deployments only
    welcome_grant: int = 100 * ONE  # dev chains only; 0 turns it off
    gas_cap: int = GAS_CAP  # no transaction of the realm needs more
    exit_window_s: int | None = None  # None: 1 day, or 10 s on a dev chain
    supply_cap: int | None = None  # None: 10^9 $9000, or unbounded for practical purposes on a dev chain
    hold_ttl_s: float = 3600.0  # a hold that never finished returns to the payer after this
    stale_epochs: int = 3  # receipts unsettled for this many epochs are an audit finding
    token: str | None = None  # deploy the RealmLedger on this $9000 token (realms that federate share one)
    # None: the SQLite file ledger/journal.db; a postgresql:// URL: the journal every
    # broker of a realm shares (the schema `mtor broker migrate` makes)
    journal: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / "ledger"


@dataclass
class Session:
    """An open chain with the realm's contracts on it."""

    chain: Any
    deployment: Deployment
    token: Any
    ledger: Any
    realm: Ledger = field(repr=False)

    @property
    def settler(self) -> Any:
        return self.realm.settler_key

    @property
    def owner(self) -> Any:
        return self.realm.owner_key

    def cover(self, amount: int) -> bool:
        """Back ``amount`` the realm could not collect (dev chains: the owner mints it)."""
        return self.realm.cover(self, amount)


class Ledger:
    def __init__(self, config: LedgerConfig, *, commit: CommitMode = "each") -> None:
        self.config = config
        config.root.mkdir(parents=True, exist_ok=True)
        self._retire_old_embedded()
        self.journal = open_journal(config.journal or config.root / "journal.db", commit=commit)
        self.prices = PriceTable.load(config.pricing_file)
        self.settler = Settler(
            self.journal,
            config.root / "epochs",
            epoch_seconds=config.epoch_seconds,
            epoch_queries=config.epoch_queries,
        )
        self._keys: dict[str, Any] = {}
        self._terms: Terms | None = None
        self._checked: Deployment | None = None  # the deployment already found on the embedded chain
        self._bound: Deployment | None = None  # the deployment found to be the journal's
        self.proofs = EarningsProofs(self.settler.folder)

    def close(self) -> None:
        self.journal.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- files and keys --------------------------------------------------------------

    @property
    def deployment_file(self) -> Path:
        return self.config.root / "deployment.json"

    @property
    def chain_file(self) -> Path:
        return self.config.root / "chain.sqlite"

    def deployment(self) -> Deployment | None:
        return Deployment.load(self.deployment_file)

    def terms(self) -> Terms | None:
        """The chain and contract authorisations are signed for (None until deployed); cheap."""
        if self._terms is None and self.deployment_file.exists():
            dep = self.deployment()
            self._terms = dep.terms() if dep is not None else None
        return self._terms

    def _key(self, name: str) -> Any:
        if name not in self._keys:
            self._keys[name] = load_or_create_key(self.config.root / f"{name}.key")
        return self._keys[name]

    @property
    def owner_key(self) -> Any:
        return self._key("owner")

    @property
    def settler_key(self) -> Any:
        return self._key("settler")

    @property
    def voucher_key(self) -> Any:
        return self._key("voucher")

    def _retire_old_embedded(self) -> None:
        """An embedded dev realm of the version 1 contracts starts afresh; its files are kept aside."""
        root = self.config.root
        data = Deployment.read(root / "deployment.json")
        if data is None or data.get("version", 1) == DEPLOYMENT_VERSION or data.get("rpc") is not None:
            return
        if self.config.chain_rpc or os.environ.get(ENV_RPC):
            return
        aside = root.with_name(f"ledger.v{data.get('version', 1)}-{int(time.time())}")
        root.rename(aside)
        root.mkdir()
        log.warning("the embedded dev chain held version 1 contracts: started afresh, the old files are in %s", aside)

    def rpc_url(self) -> str | None:
        if self.config.chain_rpc:
            return self.config.chain_rpc
        if os.environ.get(ENV_RPC):
            return os.environ[ENV_RPC]
        dep = self.deployment()
        return dep.rpc if dep is not None else None

    # --- chain sessions ----------------------------------------------------------------

    def open_chain(self) -> Any:
        """The realm's chain (``--chain-rpc``, $MTOR_CHAIN_RPC, the deployment's, else embedded);
        the caller closes it."""
        return self._open_chain()

    def _open_chain(self) -> Any:
        from ledger.chain import Chain

        url = self.rpc_url()
        cap = self.config.gas_cap
        return Chain.connect(url, gas_cap=cap) if url else Chain.embedded(self.chain_file, gas_cap=cap)

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
            session = self._check(chain, dep)  # the chain first: its errors say more
            self._check_bound(dep)
            yield session
        finally:
            chain.close()

    def _check(self, chain: Any, dep: Deployment) -> Session:
        if chain.rpc is None and self._checked == dep:
            # The embedded chain lives in our data dir: checked once, it cannot change under us.
            return Session(
                chain, dep, chain.contract("NineThousand", dep.token), chain.contract("RealmLedger", dep.ledger), self
            )
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
                and chain._call(lambda: ledger.functions.exitWindow().call()) == dep.exit_window
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
        self._checked = dep
        return Session(chain, dep, token, ledger, self)

    def deploy(self, *, force: bool = False) -> Deployment:
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

    def _deploy(self, chain: Any) -> Deployment:
        bound = self.journal.meta(BOUND_KEY)
        if bound is not None and self.journal.last_txn_id():
            raise ChainError(
                "wrong_deployment",
                f"the journal {self.journal.where} already keeps the money of contracts {bound}",
                f"brokers of one paid realm share the ledger folder: copy {self.config.root} "
                "(deployment.json and the keys) from a broker of the realm instead of deploying",
            )
        cfg = self.config
        owner, settler, voucher = self.owner_key, self.settler_key, self.voucher_key
        dev = bool(chain.dev)
        faucet = cfg.faucet_amount if dev else 0
        cap = cfg.supply_cap or (DEV_SUPPLY_CAP if dev else SUPPLY_CAP)
        window = cfg.exit_window_s if cfg.exit_window_s is not None else (DEV_EXIT_WINDOW_S if dev else EXIT_WINDOW_S)
        if cfg.token:
            token = cfg.token
            if not chain.w3.eth.get_code(token):
                raise ChainError("no_contract", f"no token contract at {token} on {chain.name}", "check [ledger] token")
        else:
            token, _ = chain.deploy(owner, "NineThousand", owner.address, faucet, cap)
        ledger, block = chain.deploy(owner, "RealmLedger", token, owner.address, settler.address, voucher.address, window)
        dep = Deployment(
            chain_id=chain.chain_id,
            token=token,
            ledger=ledger,
            owner=owner.address,
            settler=settler.address,
            voucher_signer=voucher.address,
            block=block,
            exit_window=window,
            supply_cap=cap,
            dev=dev,
            rpc=chain.rpc,
        )
        dep.save(self.deployment_file)
        self._terms = dep.terms()
        self.journal.set_meta(BOUND_KEY, _binding(dep))
        self._bound = dep
        return dep

    # --- one journal, one deployment ------------------------------------------------------

    def check_journal(self) -> None:
        """Before a paid broker starts: its deployment must be the journal's (brokers of one
        realm share a journal, so they must share the contracts it books), and a realm
        whose journal moved to PostgreSQL must not leave money in its old SQLite file.
        Raises LedgerError with what to do."""
        old = self.config.root / "journal.db"
        if self.config.journal is not None and old.exists():
            from ledger.journal import SqliteJournal

            local = SqliteJournal(old)
            try:
                kept = local.last_txn_id()
            finally:
                local.close()
            if kept:
                raise LedgerError(
                    "money_elsewhere",
                    f"{old} keeps {kept} transaction(s) of this realm; the journal {self.journal.where} is another",
                    "run this realm's broker without a postgresql:// --db (or settle, refund and start a new "
                    "realm, MTOR_HOME, for the realm of brokers)",
                )
        dep = self.deployment()
        if dep is not None:
            self._check_bound(dep)

    def _check_bound(self, dep: Deployment) -> None:
        """Bind an unbound journal to ``dep``; raise if it is bound to other contracts."""
        if self._bound == dep:
            return
        mine = _binding(dep)
        bound = self.journal.meta(BOUND_KEY)
        if bound is None:
            self.journal.set_meta(BOUND_KEY, mine)
        elif json.loads(bound) != json.loads(mine):
            theirs = json.loads(bound)
            raise ChainError(
                "wrong_deployment",
                f"this broker's contracts (chain {dep.chain_id}, ledger {dep.ledger}, in {self.deployment_file}) are "
                f"not the journal's (chain {theirs['chain_id']}, ledger {theirs['ledger']}, in {self.journal.where})",
                f"brokers of one paid realm share the ledger folder: copy {self.config.root} (deployment.json and "
                "the keys) from a broker of the realm, or give this broker its own --db",
            )
        self._bound = dep

    # --- money moves on chain ---------------------------------------------------------------

    def sync(self, session: Session | None = None) -> watcher.SyncReport:
        if session is None:
            with self.session() as s:
                return watcher.sync(self.journal, s, self.config.confirmations)
        return watcher.sync(self.journal, session, self.config.confirmations)

    def _sync_own(self, s: Session) -> watcher.SyncReport:
        """After our own transaction: on the embedded chain it is final at once."""
        return watcher.sync(self.journal, s, 0 if s.chain.rpc is None else self.config.confirmations)

    def faucet(self, account: Any) -> int:
        """Dev chains: mint test tokens to ``account``; returns its token balance."""
        with self.session() as s:
            return W.faucet(s, account)

    def deposit(self, account: Any, amount: int) -> dict[str, Any]:
        """Escrow ``amount`` of the account's tokens; credited once confirmed."""
        _positive(amount)
        with self.session() as s:
            tx_hash = W.deposit(s, account, amount)
            report = watcher.sync(self.journal, s, self.config.confirmations)
        return {
            "tx_hash": tx_hash,
            "credited": any(c["kind"] == "deposit" and c["address"] == account.address for c in report.credited),
            "confirmations": self.config.confirmations,
        }

    def pending_grants(self) -> dict[str, int]:
        """Welcome grants credited in the journal and not escrowed on chain yet."""
        granted = {t.payer: t.amount or 0 for t in self.journal.kinds("welcome") if t.payer}
        for t in self.journal.kinds("welcome_escrowed"):
            granted.pop(t.payer or "", None)
        return granted

    def escrow_grants(self, s: Session) -> int:
        """Deposit on chain the welcome grants the journal already credited: one mint and one
        approve for all of them, one ``depositForMany`` per batch (the upkeep, off the loop)."""
        pending = self.pending_grants()
        if not pending or not s.chain.dev:
            return 0
        owner = self.owner_key
        total = sum(pending.values())
        s.chain.transact(owner, s.token.functions.mint(owner.address, total), what="minting welcome grants")
        s.chain.transact(owner, s.token.functions.approve(s.deployment.ledger, total), what="approve")
        users = list(pending)
        for i in range(0, len(users), GRANTS_PER_TX):
            batch = users[i : i + GRANTS_PER_TX]
            fn = s.ledger.functions.depositForMany(batch, [pending[u] for u in batch])
            s.chain.transact(owner, fn, what=f"{len(batch)} welcome deposits")
        self._sync_own(s)
        return len(pending)

    def cover(self, s: Session, amount: int) -> bool:
        """Back ``amount`` of earnings the realm could not collect. Dev chains: the owner mints
        and covers; elsewhere the realm's operator must (False)."""
        if amount <= 0:
            return True
        owner = self.owner_key
        if not s.chain.dev or s.token.functions.owner().call() != owner.address:
            return False  # not a dev chain, or a shared token this realm cannot mint
        s.chain.transact(owner, s.token.functions.mint(owner.address, amount), what="minting a cover")
        s.chain.transact(owner, s.token.functions.approve(s.deployment.ledger, amount), what="approve")
        s.chain.transact(owner, s.ledger.functions.cover(amount), what="covering a shortfall")
        self._sync_own(s)
        return True

    def refund(self, account: Any, amount: int | None = None) -> dict[str, Any]:
        """Unspent deposit back to the wallet: the realm reserves it and signs a voucher
        (:meth:`refund_voucher`), then the user redeems the voucher on chain."""
        voucher = self.refund_voucher(account.address, amount)
        with self.session() as s:
            tx_hash = W.refund(s, account, voucher)
            self._sync_own(s)
        return {"tx_hash": tx_hash, "amount": voucher["amount"]}

    def refund_voucher(self, user: str, amount: int | None = None) -> dict[str, Any]:
        """Reserve ``amount`` of ``user``'s unspent deposit (all of it by default) and sign
        the voucher that RealmLedger.refund pays out; the user sends it on chain.

        One voucher per user is open at a time. Asked again while it is (the user's
        transaction was lost, say), the realm hands out the same voucher, which the
        user can still redeem; once it expires unredeemed its reservation returns and
        the on-chain nonce, which did not move, serves the next one.
        """
        if self.journal.touched(A.realm(user)):
            raise LedgerError(
                "peer_realm",
                f"{user} is a peer realm paying on credit here: it has no deposit to refund",
                "it settles with `mtor federation settle`",
            )
        with self.session() as s:
            watcher.sync(self.journal, s, self.config.confirmations)
            self._expire_vouchers(s)
            outstanding = self._outstanding_voucher(user)
            if outstanding is not None:
                ref, held, memo = outstanding
                if amount is not None and amount != held:
                    raise LedgerError(
                        "voucher_outstanding",
                        f"refund voucher {ref} of {user} for {format_amount(held)} $9000 is not redeemed yet",
                        "redeem it first: `mtor wallet refund` without an amount sends it again "
                        f"(it expires within {VOUCHER_TTL_S} s of being signed)",
                    )
                return self._voucher(s, user, held, memo["nonce"], memo["deadline"])
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
            nonce = int(s.chain._call(lambda: s.ledger.functions.refundNonce(user).call()))
            deadline = s.chain.timestamp() + VOUCHER_TTL_S
            # Keyed by nonce and deadline: a voucher that expired unredeemed leaves the
            # on-chain nonce where it was, and the next one reuses it.
            ref = f"{user}:{nonce}:{deadline}"
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
            return self._voucher(s, user, amount, nonce, deadline)

    def _voucher(self, s: Session, user: str, amount: int, nonce: int, deadline: int) -> dict[str, Any]:
        signature = sign_voucher(self.voucher_key, s.chain.chain_id, s.deployment.ledger, user, amount, nonce, deadline)
        return {"amount": amount, "nonce": nonce, "deadline": deadline, "signature": "0x" + signature.hex()}

    def _open_vouchers(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        return [(ref, payer, amount, json.loads(memo)) for ref, payer, amount, memo in self.journal.open_vouchers()]

    def has_open_vouchers(self) -> bool:
        return bool(self._open_vouchers())

    def _outstanding_voucher(self, user: str) -> tuple[str, int, dict[str, Any]] | None:
        for ref, payer, amount, memo in self._open_vouchers():
            if payer == user:
                return ref, amount, memo
        return None

    def _expire_vouchers(self, s: Session) -> None:
        """Close vouchers that can no longer be redeemed: used (the nonce moved on), or expired
        (the reservation returns to the balance)."""
        now = s.chain.timestamp()
        for ref, user, amount, memo in self._open_vouchers():
            used = int(s.ledger.functions.refundNonce(user).call()) > memo["nonce"]
            if used:
                self.journal.post("voucher_redeemed", ref, (), payer=user, amount=amount)
            elif memo["deadline"] < now:
                self.journal.post(
                    "voucher_expired",
                    ref,
                    ((A.refund(user), -amount), (A.user(user), amount)),
                    payer=user,
                    amount=amount,
                )

    # --- leaving and claiming ------------------------------------------------------------------

    def exit(self, account: Any, action: str = "status") -> dict[str, Any]:
        """``start``, ``finish``, ``cancel`` or ``status`` of the account's exit."""
        actions = {"start": W.start_exit, "finish": W.finish_exit, "cancel": W.cancel_exit}
        with self.session() as s:
            if action == "status":
                return W.exit_status(s, account.address)
            out = actions[action](s, account)
            self._sync_own(s)
            return out

    def proof(self, address: str) -> dict[str, Any]:
        """``address``'s cumulative earnings in the last settled root, with its Merkle proof."""
        settled = self.settler.last_settled()
        if settled is None:
            raise LedgerError("not_settled", "the realm has settled no epoch yet", "wait for the next settlement")
        earned = (
            None if self.settler.earnings_file(settled.number).exists() else self.settler.earnings_of(settled.number)
        )
        return self.proofs.proof(settled.number, settled.earnings_root, address, earned)

    def public_terms(self) -> dict[str, Any] | None:
        """What anyone needs to deposit, exit, claim or sign for this realm on its chain
        (the money desk's ``GET /v1/realm``)."""
        dep = self.deployment()
        if dep is None:
            return None
        return {
            "chain_id": dep.chain_id,
            "token": dep.token,
            "ledger": dep.ledger,
            "dev": dep.dev,
            "exit_window_s": dep.exit_window,
            "owner": dep.owner,
            "settler": dep.settler,
            "voucher_signer": dep.voucher_signer,
            "domain": {"name": "MTOR RealmLedger", "version": "2"},
        }

    def claim(self, account: Any) -> dict[str, Any]:
        """Claim the account's settled earnings with a proof from this realm's files."""
        with self.session() as s:
            info = self.proof(account.address)
            if bytes.fromhex(info["root"][2:]) != W.earnings_root(s):
                raise LedgerError(
                    "proof_outdated",
                    f"the chain's earnings root is newer than epoch {info['epoch']} in the realm's journal",
                    "the realm is settling an epoch right now; claim again in a moment",
                )
            proof = [bytes.fromhex(p[2:]) for p in info["proof"]]
            out = W.claim(s, account, account.address, int(info["cumulative"]), proof)
            self._sync_own(s)
        return {**out, "epoch": info["epoch"]}

    def earnings(self, address: str) -> dict[str, Any]:
        """What a worker earned: unclaimed in the journal, settled and claimable, claimed."""
        settled = self.settler.last_settled()
        posted = self.settler.earnings_of(settled.number).get(address, 0) if settled else 0
        with self.session() as s:
            watcher.sync(self.journal, s, self.config.confirmations)
            done = W.claimed(s, address)
            unclaimed = self.journal.balance(A.worker(address))
            return {
                "address": address,
                "unclaimed": unclaimed,
                "settled_total": posted,
                "claimed": done,
                "claimable": max(0, posted - done),
                "awaiting_settlement": max(0, unclaimed - max(0, posted - done)),
                "tokens": W.tokens(s, address),
            }

    # --- settlement and audit ------------------------------------------------------------------

    def settle(self) -> list[Epoch]:
        """Settle now: close every unsettled receipt into epochs (each fixed in the journal
        first, so it is the same epoch whenever the chain can be reached), then send them."""
        while self.settler.close_epoch(force=True) is not None:
            pass
        with self.session() as s:
            self.escrow_grants(s)
            return self.settler.settle(s)

    def audit(self, receipt: str | None = None) -> audit_mod.AuditReport:
        with self.session() as s:
            watcher.sync(self.journal, s, self.config.confirmations)
            report = audit_mod.audit(self, s)
            if receipt is not None:
                report.proof = audit_mod.prove(self.journal, self.settler, s, receipt)
            return report

    def billing(self, **kwargs: Any) -> RealmBilling:
        kwargs.setdefault("epoch_queries", self.config.epoch_queries)
        return RealmBilling(
            self.journal,
            self.prices,
            terms=self.terms,
            **kwargs,
        )

    # --- views -------------------------------------------------------------------------------

    def wallet(self, address: str, *, chain: bool = True) -> dict[str, Any]:
        j = self.journal
        out: dict[str, Any] = {
            "address": address,
            "available": j.balance(A.user(address)),
            "held": j.balance(A.hold(address)),
            "refund_pending": j.balance(A.refund(address)),
            "earned": j.balance(A.worker(address)),
            "charged": j.charged(address),
            "exiting": j.exiting(address),
        }
        if chain:
            with self.session() as s:
                watcher.sync(self.journal, s, self.config.confirmations)
                out["available"] = j.balance(A.user(address))
                out["exiting"] = j.exiting(address)
                status = W.exit_status(s, address)
                out["chain"] = {
                    "name": s.chain.name,
                    "chain_id": s.chain.chain_id,
                    "ledger": s.deployment.ledger,
                    "token": s.deployment.token,
                    "tokens": W.tokens(s, address),
                    "deposit": status["deposit"],
                    "spent": status["spent"],
                    "claimed": W.claimed(s, address),
                    "exit": status["exit"],
                    "finish_after": status["finish_after"],
                    "dev": s.chain.dev,
                }
        return out


def _positive(amount: int) -> None:
    if amount <= 0:
        raise LedgerError("nothing_to_move", "the amount is 0: there is nothing to move", "see `mtor wallet`")


def sign_voucher(signer: Any, chain_id: int, ledger: str, user: str, amount: int, nonce: int, deadline: int) -> bytes:
    """The voucher signer's EIP-712 signature that RealmLedger.refund checks."""
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
            "domain": {"name": "MTOR RealmLedger", "version": "2", "chainId": chain_id, "verifyingContract": ledger},
            "message": {"user": user, "amount": amount, "nonce": nonce, "deadline": deadline},
        }
    )
    return bytes(signer.sign_message(msg).signature)


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


def _binding(dep: Deployment) -> str:
    return json.dumps({"chain_id": dep.chain_id, "ledger": dep.ledger.lower(), "token": dep.token.lower()})
