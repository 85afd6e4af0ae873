"""The sysop role: who holds it, what it may do, and the audit log of all of it.

The realm's operator (``BrokerConfig.operator``: the key that runs the
broker, or a configured address) is a sysop by right and the only one who may
grant or revoke the role. Sysops ban and unban addresses (a banned client is
cut off at once, mid-session too, with its live intents ended and their holds
released; a banned worker cannot register), terminate any intent, pause,
resume and remove workers, and broadcast a message to every connected client
and worker. Every attempt, allowed or refused, is written to the audit log.

In a realm of brokers every one of them hears of it: a ban closes the
address's sessions on every broker and ends its intents wherever they run; a
worker on another broker is paused, resumed or removed by its own broker; a
broadcast reaches every broker's clients and workers.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson

from broker.accounts import AccountError, AccountStore, norm
from broker.background import Background
from broker.protocol import Broadcast, Error
from broker.realm import Others

if TYPE_CHECKING:
    from broker.dispatch import Dispatcher
    from broker.peer import Peer, Peers
    from broker.registry import WorkerEntry, WorkerRegistry
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
        others: Others,
        background: Background,
    ) -> None:
        """``others``: the realm's other brokers, told of every ban, grant,
        removal and broadcast (a lone broker has none)."""
        self._roles = roles
        self._store = store
        self._dispatcher = dispatcher
        self._registry = registry
        self._trust = trust
        self._peers = peers
        self._subs = subs
        self._others = others
        self._background = background
        self._removed: dict[str, float] = {}  # worker address -> wall time it may return
        self._closing: set[asyncio.Task[None]] = set()  # strong refs: a bare task may be collected mid-close
        others.on("ban", self._banned_elsewhere)
        others.on("accounts", lambda _: background.run("accounts-reload", store.reload()))
        others.on("removed", self._removed_elsewhere)
        others.on("worker", self._worker_action_here)
        others.on("broadcast", self._broadcast_here)

    # --- who may -------------------------------------------------------

    async def check(self, actor: str, action: str, target: str, operator_only: bool = False) -> None:
        roles = self._roles
        allowed = roles.is_operator(actor) if operator_only else roles.is_sysop(actor)
        if not allowed:
            await self._store.audit(actor, action, target, {}, "refused")
            who = "the realm's operator" if operator_only else "a sysop"
            raise AccountError(
                "forbidden",
                f"{actor} is not {who}: `{action}` refused",
                "ask the realm's operator to run `mtor sysop grant YOUR_ADDRESS`"
                if not operator_only
                else "run it with the key that runs the broker (or the configured operator address)",
            )

    # --- admission (asked by the socket handlers) -------------------------

    def refusal(self, role: str, address: str) -> Error | None:
        """The `banned` answer for a banned (or, for a worker, removed) address
        logging in; the socket's handler sends it and closes with BANNED_CLOSE."""
        ban = self._store.banned(address)
        until = self._removed.get(norm(address), 0.0) if role == "worker" else 0.0
        if ban is None and until <= time.time():
            return None
        if ban is not None:
            return _banned_error(ban.reason)
        wait = round(until - time.time(), 1)
        return Error(
            code="banned",
            message=f"this worker was removed by a sysop; it may register again in {wait:g} s",
            hint="ask the realm's sysop why",
            retry_after=wait,
        )

    def _close(self, peer: Peer, why: bytes) -> None:
        task = asyncio.get_running_loop().create_task(peer.close(code=BANNED_CLOSE, message=why))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- actions --------------------------------------------------------

    async def grant(self, actor: str, address: str) -> dict[str, Any]:
        await self.check(actor, "grant", address, operator_only=True)
        await self._store.grant(address, actor)
        self._others.tell_others("accounts", b"")
        return await self._done(actor, "grant", address, {})

    async def revoke(self, actor: str, address: str) -> dict[str, Any]:
        await self.check(actor, "revoke", address, operator_only=True)
        had = await self._store.revoke(address)
        self._others.tell_others("accounts", b"")
        return await self._done(actor, "revoke", address, {"was_sysop": had})

    async def ban(self, actor: str, address: str, reason: str) -> dict[str, Any]:
        await self.check(actor, "ban", address)
        if self._roles.is_operator(address):
            raise AccountError("bad_params", "the realm's operator cannot be banned", "ban another address")
        reason = reason.strip() or "no reason given"
        await self._store.ban(address, reason, actor)
        self._others.tell_others("ban", orjson.dumps({"address": address, "reason": reason}))
        ended = await self._end_intents(address, reason)
        sessions = self._close_sessions(address, reason)
        return await self._done(actor, "ban", address, {"reason": reason, "intents_ended": ended,
                                                        "sessions_closed": sessions})  # fmt: skip

    async def unban(self, actor: str, address: str) -> dict[str, Any]:
        await self.check(actor, "unban", address)
        was = await self._store.unban(address)
        self._others.tell_others("accounts", b"")
        return await self._done(actor, "unban", address, {"was_banned": was})

    async def terminate(self, actor: str, guid: str, reason: str) -> dict[str, Any]:
        await self.check(actor, "terminate", guid)
        message = "terminated by a sysop" + (f": {reason}" if reason else "")
        if not await self._dispatcher.terminate(guid, "cancelled", message, "the hold was released"):
            raise AccountError("unknown_guid", f"no queued or running intent {guid!r}", "see `mtor sysop workers`")
        return await self._done(actor, "terminate", guid, {"reason": reason})

    async def worker(self, actor: str, action: str, worker_id: str, reason: str) -> dict[str, Any]:
        await self.check(actor, f"worker {action}", worker_id)
        if action not in ("pause", "resume", "remove"):
            raise AccountError("bad_params", f"unknown worker action {action!r}", "pause, resume or remove")
        entry = next((w for w in self._registry if w.id == worker_id), None)
        if entry is not None:
            address = entry.address
            await self._act_on(entry, action, reason)
        else:
            # On another broker of the realm: that broker acts on it.
            there = next((w for w in self._others.remote_workers() if w["id"] == worker_id), None)
            if there is None:
                raise AccountError("bad_params", f"no connected worker {worker_id!r}",
                                   "list them with `mtor sysop workers`")  # fmt: skip
            address = str(there["address"])
            request = {"id": worker_id, "action": action, "reason": reason}
            self._others.tell(str(there["broker"]), "worker", orjson.dumps(request))
        if action == "remove":
            until = time.time() + REMOVED_FOR_S
            self._removed[norm(address)] = until
            self._others.tell_others("removed", orjson.dumps({"address": address, "until": until}))
        return await self._done(actor, f"worker {action}", worker_id, {"address": address, "reason": reason})

    async def _act_on(self, entry: WorkerEntry, action: str, reason: str) -> None:
        trust = self._trust
        if action == "pause":
            trust.pause(entry)
        elif action == "resume":
            await trust.resume(entry)
        else:
            entry.peer.send(
                Error(code="banned", message=f"removed by a sysop: {reason or 'no reason given'}",
                      hint="ask the realm's sysop why", retry_after=REMOVED_FOR_S)
            )  # fmt: skip
            self._close(entry.peer, b"removed")
        self._subs.changed("workers", "stats")

    async def broadcast(self, actor: str, message: str) -> dict[str, Any]:
        await self.check(actor, "broadcast", "*")
        message = message.strip()
        if not 1 <= len(message) <= MAX_BROADCAST_CHARS:
            raise AccountError("bad_params", f"a broadcast is 1..{MAX_BROADCAST_CHARS} characters", "shorten it")
        sender = self._store.nickname(actor) or actor
        frame = Broadcast(message=message, sender=sender)
        delivered = self._deliver(frame)
        self._others.tell_others("broadcast", orjson.dumps({"message": message, "sender": sender}))
        return await self._done(actor, "broadcast", "*", {"message": message, "delivered": delivered,
                                                          "brokers": 1 + len(self._others.others())})  # fmt: skip

    def _deliver(self, frame: Broadcast) -> int:
        peers = self._peers.authenticated()
        for peer in peers:
            peer.send(frame)
        return len(peers)

    async def workers(self, actor: str) -> list[dict[str, Any]]:
        await self.check(actor, "workers", "*")
        rows = []
        for entry in self._registry:
            row = entry.to_dict(private=True)
            row["trust"] = self._trust.view(entry)
            rows.append(row)
        return rows + self._others.remote_workers()

    async def audit_log(self, actor: str, limit: int) -> list[dict[str, Any]]:
        await self.check(actor, "audit", "*")
        return await self._store.audit_log(limit)

    # --- what other brokers tell this one ----------------------------------

    def _banned_elsewhere(self, payload: bytes) -> None:
        ban = orjson.loads(payload)
        self._background.run("accounts-reload", self._store.reload())
        self._close_sessions(ban["address"], ban["reason"])

    def _broadcast_here(self, payload: bytes) -> None:
        self._deliver(Broadcast(**orjson.loads(payload)))

    def _removed_elsewhere(self, payload: bytes) -> None:
        removed = orjson.loads(payload)
        self._removed[norm(removed["address"])] = float(removed["until"])

    def _worker_action_here(self, payload: bytes) -> None:
        request = orjson.loads(payload)
        entry = next((w for w in self._registry if w.id == request["id"]), None)
        if entry is not None:
            self._background.run("sysop-worker", self._act_on(entry, request["action"], request["reason"]))

    # --- helpers --------------------------------------------------------

    async def _end_intents(self, address: str, reason: str) -> int:
        """End the live intents of ``address``, wherever in the realm they are."""
        key = norm(address)
        guids = {job.guid for job in self._dispatcher.jobs.values() if norm(job.user) == key}
        guids.update(await self._others.live_guids(address))
        ended = 0
        for guid in guids:
            if await self._dispatcher.terminate(guid, "banned", f"this address is banned: {reason}",
                                                "the hold was released"):  # fmt: skip
                ended += 1
        return ended

    def _close_sessions(self, address: str, reason: str) -> int:
        """Disconnect every session of ``address`` on this broker."""
        key = norm(address)
        sessions = 0
        for peer in self._peers:
            if peer.address is not None and norm(peer.address) == key:
                sessions += 1
                peer.send(_banned_error(reason))
                self._close(peer, b"banned")
        return sessions

    async def _done(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> dict[str, Any]:
        await self._store.audit(actor, action, target, detail, "ok")
        return {"ok": True, "action": action, "target": target, **detail}


def _banned_error(reason: str) -> Error:
    return Error(
        code="banned",
        message=f"this address is banned from the realm: {reason}",
        hint="ask the realm's sysop to lift the ban",
        detail={"reason": reason},
    )
