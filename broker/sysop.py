"""The sysop role: who holds it, what it may do, and the audit log of all of it.

The realm's operator (``BrokerConfig.operator``: the key that runs the
broker, or a configured address) is a sysop by right and the only one who may
grant or revoke the role. Sysops ban and unban addresses (a banned client is
cut off at once, mid-session too, with its live intents ended and their holds
released; a banned worker cannot register), terminate any intent, pause,
resume and remove workers, and broadcast a message to every connected client
and worker. Every attempt, allowed or refused, is written to the audit log.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from broker.accounts import AccountError, AccountStore, norm
from broker.protocol import Broadcast, Error

if TYPE_CHECKING:
    from broker.dispatch import Dispatcher
    from broker.peer import Peer, Peers
    from broker.registry import WorkerRegistry
    from broker.roles import Roles
    from broker.subscriptions import Subscriptions
    from broker.trust import WorkerTrust

MAX_BROADCAST_CHARS = 2000
REMOVED_FOR_S = 600.0  # a removed worker's address may not register again for this long
BANNED_CLOSE = 4003


class Sysop:
    def __init__(
        self,
        roles: Roles,
        store: AccountStore,
        dispatcher: Dispatcher,
        registry: WorkerRegistry,
        trust: WorkerTrust,
        peers: Peers,
        subs: Subscriptions,
    ) -> None:
        self._roles = roles
        self._store = store
        self._dispatcher = dispatcher
        self._registry = registry
        self._trust = trust
        self._peers = peers
        self._subs = subs
        self._removed: dict[str, float] = {}  # worker address -> monotonic time it may return
        self._closing: set[asyncio.Task[None]] = set()  # strong refs: a bare task may be collected mid-close

    # --- who may -------------------------------------------------------

    def check(self, actor: str, action: str, target: str, operator_only: bool = False) -> None:
        roles = self._roles
        allowed = roles.is_operator(actor) if operator_only else roles.is_sysop(actor)
        if not allowed:
            self._store.audit(actor, action, target, {}, "refused")
            who = "the realm's operator" if operator_only else "a sysop"
            raise AccountError(
                "forbidden",
                f"{actor} is not {who}: `{action}` refused",
                "ask the realm's operator to run `mtor sysop grant YOUR_ADDRESS`"
                if not operator_only
                else "run it with the key that runs the broker (or the configured operator address)",
            )

    # --- admission (hooked into the socket handlers) ----------------------

    def refused(self, peer: Peer, address: str) -> bool:
        """Answer and close a banned (or removed) address; True if it was refused."""
        ban = self._store.banned(address)
        until = self._removed.get(norm(address), 0.0) if peer.role == "worker" else 0.0
        if ban is None and until <= time.monotonic():
            return False
        if ban is not None:
            error = _banned_error(ban.reason)
        else:
            wait = round(until - time.monotonic(), 1)
            error = Error(
                code="banned",
                message=f"this worker was removed by a sysop; it may register again in {wait:g} s",
                hint="ask the realm's sysop why",
                retry_after=wait,
            )
        peer.send(error)
        self._close(peer, b"banned")
        return True

    def _close(self, peer: Peer, why: bytes) -> None:
        task = asyncio.get_running_loop().create_task(peer.close(code=BANNED_CLOSE, message=why))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- actions --------------------------------------------------------

    def grant(self, actor: str, address: str) -> dict[str, Any]:
        self.check(actor, "grant", address, operator_only=True)
        self._store.grant(address, actor)
        return self._done(actor, "grant", address, {})

    def revoke(self, actor: str, address: str) -> dict[str, Any]:
        self.check(actor, "revoke", address, operator_only=True)
        had = self._store.revoke(address)
        return self._done(actor, "revoke", address, {"was_sysop": had})

    async def ban(self, actor: str, address: str, reason: str) -> dict[str, Any]:
        self.check(actor, "ban", address)
        if self._roles.is_operator(address):
            raise AccountError("bad_params", "the realm's operator cannot be banned", "ban another address")
        reason = reason.strip() or "no reason given"
        self._store.ban(address, reason, actor)
        ended = await self._cut_off(address, reason)
        return self._done(actor, "ban", address, {"reason": reason, **ended})

    def unban(self, actor: str, address: str) -> dict[str, Any]:
        self.check(actor, "unban", address)
        was = self._store.unban(address)
        return self._done(actor, "unban", address, {"was_banned": was})

    async def terminate(self, actor: str, guid: str, reason: str) -> dict[str, Any]:
        self.check(actor, "terminate", guid)
        message = "terminated by a sysop" + (f": {reason}" if reason else "")
        if not await self._dispatcher.terminate(guid, "cancelled", message, "the hold was released"):
            raise AccountError("unknown_guid", f"no queued or running intent {guid!r}", "see `mtor sysop workers`")
        return self._done(actor, "terminate", guid, {"reason": reason})

    def worker(self, actor: str, action: str, worker_id: str, reason: str) -> dict[str, Any]:
        self.check(actor, f"worker {action}", worker_id)
        entry = next((w for w in self._registry if w.id == worker_id), None)
        if entry is None:
            raise AccountError("bad_params", f"no connected worker {worker_id!r}", "list them with `mtor sysop workers`")
        trust = self._trust
        if action == "pause":
            trust.pause(entry)
        elif action == "resume":
            trust.resume(entry)
        elif action == "remove":
            self._removed[norm(entry.address)] = time.monotonic() + REMOVED_FOR_S
            entry.peer.send(
                Error(code="banned", message=f"removed by a sysop: {reason or 'no reason given'}",
                      hint="ask the realm's sysop why", retry_after=REMOVED_FOR_S)
            )
            self._close(entry.peer, b"removed")
        else:
            raise AccountError("bad_params", f"unknown worker action {action!r}", "pause, resume or remove")
        self._subs.changed("workers", "stats")
        return self._done(actor, f"worker {action}", worker_id, {"address": entry.address, "reason": reason})

    def broadcast(self, actor: str, message: str) -> dict[str, Any]:
        self.check(actor, "broadcast", "*")
        message = message.strip()
        if not 1 <= len(message) <= MAX_BROADCAST_CHARS:
            raise AccountError("bad_params", f"a broadcast is 1..{MAX_BROADCAST_CHARS} characters", "shorten it")
        sender = self._store.nickname(actor) or actor
        frame = Broadcast(message=message, sender=sender)
        peers = self._peers.authenticated()
        for peer in peers:
            peer.send(frame)
        return self._done(actor, "broadcast", "*", {"message": message, "delivered": len(peers)})

    def workers(self, actor: str) -> list[dict[str, Any]]:
        self.check(actor, "workers", "*")
        rows = []
        for entry in self._registry:
            row = entry.to_dict()
            row["trust"] = self._trust.view(entry)
            rows.append(row)
        return rows

    def audit_log(self, actor: str, limit: int) -> list[dict[str, Any]]:
        self.check(actor, "audit", "*")
        return self._store.audit_log(limit)

    # --- helpers --------------------------------------------------------

    async def _cut_off(self, address: str, reason: str) -> dict[str, int]:
        """Disconnect every session of ``address`` and end its live intents."""
        key = norm(address)
        dispatcher = self._dispatcher
        ended = 0
        for job in list(dispatcher.jobs.values()):
            if norm(job.user) == key and await dispatcher.terminate(
                job.guid, "banned", f"this address is banned: {reason}", "the hold was released"
            ):
                ended += 1
        sessions = 0
        for peer in self._peers:
            if peer.address is not None and norm(peer.address) == key:
                sessions += 1
                peer.send(_banned_error(reason))
                self._close(peer, b"banned")
        return {"intents_ended": ended, "sessions_closed": sessions}

    def _done(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> dict[str, Any]:
        self._store.audit(actor, action, target, detail, "ok")
        return {"ok": True, "action": action, "target": target, **detail}


def _banned_error(reason: str) -> Error:
    return Error(
        code="banned",
        message=f"this address is banned from the realm: {reason}",
        hint="ask the realm's sysop to lift the ban",
        detail={"reason": reason},
    )
