"""The realm's background bookkeeping, in a process of its own.

:class:`Upkeep` does one bounded pass at a time: give back holds that expired,
close the epochs that are due, and — only when there is something to do on
chain — open the chain, book its events, escrow pending welcome grants, redeem
what exiting payers owe, and send at most a few epochs. Each pass says when
the next one is needed: when an epoch falls due, a hold expires, a third of
the exit window has passed (an exit another process booked is redeemed in
time), a JSON-RPC chain is polled again (every 2 s while things happen,
backing off to 30 s at rest), or a failed pass is retried (backing off from
2 s to 5 minutes). No
exception ends it: every failure is logged, counted and retried, and its
state — failing or not, the last error, epochs waiting — is written to the
journal's meta table (key ``upkeep``) whenever it changes, for ``/metrics``,
``mtor broker status`` and ``mtor ledger audit``.

It runs as ``python -P -m ledger.upkeep CONFIG_JSON`` (py-evm holds the GIL
for whole transactions: in the broker's process, settling an epoch on the
embedded chain took 65% of it). The broker's side, :class:`UpkeepProcess`,
starts it, restarts it with backoff if it dies, and wakes it through its
stdin (a new user's grant, an epoch filling up); the process exits when its
stdin closes, so it never outlives the broker. Between wake-ups it sleeps in
``select``: an idle realm costs nothing.

A realm of several paid brokers shares one journal (PostgreSQL) and so has
one upkeep process per broker: only the one that holds the journal's leader
lock (:meth:`Journal.lead`, a session lock that dies with its connection)
does any of the above; the others stand by, asking again every
``STANDBY_S`` and whenever woken, and the first to ask after the leader's
process died takes over. An epoch is thus closed and settled by one process
at a time (closing is guarded in the journal too), and a deposit booked
once (the journal's ``(kind, ref)``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ledger import watcher
from ledger.billing import STATUS_KEY
from ledger.service import Ledger, LedgerConfig

log = logging.getLogger("mtor.ledger")

POLL_S = 2.0  # a JSON-RPC chain is polled this often while things happen ...
IDLE_POLL_S = 30.0  # ... and backs off to this at rest
RETRY_S = 2.0  # a failed pass is retried after this, doubling ...
MAX_RETRY_S = 300.0  # ... up to this
MAX_EPOCHS_PER_PASS = 5  # a backlog after an outage is sent in bounded steps
MIN_WAIT_S = 0.5  # between passes that left nothing over, whatever the settings say
STANDBY_S = 2.0  # a standing-by upkeep asks for the lead this often
CONFIG_ENV = "MTOR_UPKEEP_CONFIG"  # the LedgerConfig, as JSON, for the process


class Upkeep:
    def __init__(self, config: LedgerConfig) -> None:
        self.config = config
        self.led = Ledger(config)
        self.failures = 0  # passes that failed, in all
        self.consecutive = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_ok_at: float | None = None
        self.settled = 0  # epochs this process settled
        self._poll_s = POLL_S
        self._next_poll = 0.0  # when a JSON-RPC chain is read next (at once at start)
        self._synced_once = False
        self._written: dict[str, Any] = {}
        self._exit_redeemed: dict[str, int] = {}  # exiting payer -> charged when last redeemed
        self._exit_window: float | None = None  # the deployment's, once known
        self.leading: bool | None = None  # None until first asked

    def close(self) -> None:
        self.led.close()

    # --- one pass ------------------------------------------------------------------------

    def step(self, now: float | None = None) -> float | None:
        """One pass; returns the seconds until the next one is needed (None: only when woken)."""
        try:
            if not self._leads():
                return STANDBY_S  # another broker's upkeep does the realm's work (and reports it)
            busy = self._pass(now or time.time())
        except Exception as exc:
            self.failures += 1
            self.consecutive += 1
            self.last_error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
            self.last_error_at = time.time()
            retry = min(MAX_RETRY_S, RETRY_S * 2 ** (self.consecutive - 1))
            if self.consecutive == 1 or self.consecutive % 10 == 0:
                log.error(
                    "ledger upkeep failed (%d in a row), retrying in %.0f s: %s\n%s",
                    self.consecutive,
                    retry,
                    self.last_error,
                    traceback.format_exc().rstrip(),
                )
            self._rollback()
            self._write_status(retry)
            return retry
        if self.consecutive:
            log.info("ledger upkeep recovered after %d failed passes", self.consecutive)
        self.consecutive = 0
        self.last_ok_at = time.time()
        wait = 0.0 if busy else self._wait(time.time())
        self._write_status(wait)
        return wait

    def _leads(self) -> bool:
        leading = self.led.journal.lead()
        if leading != self.leading:
            if leading:
                log.info("this upkeep leads the realm's ledger%s", "" if self.leading is None else " (took over)")
            else:
                log.info("another broker's upkeep leads the realm's ledger: standing by")
            self.leading = leading
        return leading

    def _pass(self, now: float) -> bool:
        """Returns True when work is left over for an immediate next pass."""
        led, cfg = self.led, self.config
        expired = led.journal.expire_holds(now - cfg.hold_ttl_s)
        if expired:
            log.warning("gave back %d hold(s) open for over %.0f s", len(expired), cfg.hold_ttl_s)
        for _ in range(MAX_EPOCHS_PER_PASS):
            if led.settler.close_epoch(now=now) is None:
                break
        if not self._chain_needed(now):
            return False
        with led.session() as s:
            self._exit_window = float(s.deployment.exit_window)
            report = watcher.sync(led.journal, s, cfg.confirmations)
            self._synced_once = True
            if report.credited or report.unbooked:
                self._poll_s = POLL_S
            led.escrow_grants(s)
            exiting = self._unredeemed_exits()
            if exiting:
                led.settler.redeem(s, exiting)  # the realm's last chance, before the window closes
                self._exit_redeemed.update((p, led.journal.charged(p)) for p in exiting)
            if led.has_open_vouchers():
                led._expire_vouchers(s)
            done = led.settler.settle(s, max_epochs=MAX_EPOCHS_PER_PASS)
            self.settled += len(done)
            if done:
                log.info("settled epoch(s) %s", ", ".join(str(e.number) for e in done))
                self._poll_s = POLL_S
        if led.rpc_url() is not None:
            self._next_poll = time.time() + self._poll_s
            self._poll_s = min(IDLE_POLL_S, self._poll_s * 2)
        return bool(led.settler.pending())

    def _chain_needed(self, now: float) -> bool:
        led = self.led
        if not self._synced_once or led.settler.pending() or led.pending_grants() or self._unredeemed_exits():
            return True
        if led.has_open_vouchers():
            return True
        # Nothing of ours to send. On the embedded chain nobody but mtor transacts, and
        # every mtor command books its own transactions: no need to look. Elsewhere others
        # may deposit at any time: look now and then.
        return led.rpc_url() is not None and now >= self._next_poll

    def _unredeemed_exits(self) -> list[str]:
        """Payers leaving with charges the chain has not been asked to redeem yet."""
        journal = self.led.journal
        return [p for p in journal.exiting_payers() if journal.charged(p) > self._exit_redeemed.get(p, 0)]

    def _wait(self, now: float) -> float | None:
        led, cfg = self.led, self.config
        waits = [cfg.epoch_seconds]  # captures made while nobody woke us still settle in time
        if self._exit_window is not None:
            # an exit booked by another process (`mtor wallet exit` books its own) is seen
            # well inside its window: the realm's last chance to redeem what it is owed
            waits.append(self._exit_window / 3)
        due = led.settler.wake_in(now)
        if due is not None:
            waits.append(due)
        oldest = led.journal.oldest_hold()
        if oldest is not None:
            waits.append(oldest + cfg.hold_ttl_s - now)
        if led.rpc_url() is not None:
            waits.append(self._next_poll - now)
        return max(MIN_WAIT_S, min(waits))

    def _rollback(self) -> None:
        try:
            self.led.journal.rollback()
        except Exception:  # the connection itself is broken: open the ledger again
            try:
                self.led.close()
            except Exception:
                log.debug("closing a broken ledger failed", exc_info=True)
            self.led = Ledger(self.config)

    # --- status --------------------------------------------------------------------------

    def status(self, next_s: float | None) -> dict[str, Any]:
        return {
            "state": "failing" if self.consecutive else "ok",
            "pid": os.getpid(),
            "failures": self.failures,
            "consecutive_failures": self.consecutive,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_ok_at": self.last_ok_at,
            "settled_epochs": self.settled,
            "leading": bool(self.leading),
            "next_pass_at": None if next_s is None else time.time() + next_s,
        }

    def _write_status(self, next_s: float | None) -> None:
        status = self.status(next_s)
        steady = {k: v for k, v in status.items() if k not in ("last_ok_at", "next_pass_at")}
        if steady == self._written:
            return  # nothing a reader cares about changed: no write at rest
        try:
            self.led.journal.set_meta(STATUS_KEY, json.dumps(status))
            self._written = steady
        except Exception:
            log.warning("could not record the upkeep's status", exc_info=True)

    # --- the process loop ----------------------------------------------------------------

    def run(self, wake_fd: int) -> None:
        """Pass after pass until ``wake_fd`` (the broker's pipe) closes; any byte on it wakes us."""
        while True:
            wait = self.step()
            ready, _, _ = select.select([wake_fd], [], [], wait)
            if ready and not os.read(wake_fd, 4096):
                return  # the broker is gone


def config_to_json(config: LedgerConfig) -> str:
    data = asdict(config)
    for key, value in data.items():
        if isinstance(value, Path):
            data[key] = str(value)
    return json.dumps(data)


def config_from_json(text: str) -> LedgerConfig:
    data = json.loads(text)
    for key in ("data_dir", "pricing_file"):
        if data.get(key) is not None:
            data[key] = Path(data[key])
    return LedgerConfig(**data)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ledger-upkeep %(levelname)s %(message)s")
    upkeep = Upkeep(config_from_json(args[0] if args else os.environ[CONFIG_ENV]))
    try:
        upkeep.run(sys.stdin.fileno())
    except KeyboardInterrupt:
        pass
    finally:
        upkeep.close()


class UpkeepProcess:
    """The broker's side: runs the upkeep process, restarts it when it dies, wakes it."""

    def __init__(self, config: LedgerConfig) -> None:
        self.config = config
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def status(self) -> dict[str, Any]:
        return {
            "process": "running" if self.alive else "stopped",
            "process_pid": self._proc.pid if self._proc is not None else None,
            "restarts": self.restarts,
        }

    def poke(self) -> None:
        """Wake the upkeep now (a cheap, non-blocking byte on its stdin)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return
        try:
            proc.stdin.write(b".")
        except (ConnectionError, RuntimeError):
            pass  # it is dying; run() restarts it

    async def run(self, stop: asyncio.Event) -> None:
        delay = 1.0
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                started = time.monotonic()
                # The config goes in the environment, not argv: a journal URL may hold a
                # password, and argv is visible to every user in `ps`.
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-P", "-m", "ledger.upkeep", stdin=asyncio.subprocess.PIPE,
                    env={**os.environ, CONFIG_ENV: config_to_json(self.config)},
                )
                waiter = asyncio.ensure_future(self._proc.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    waiter.cancel()
                    break
                code = self._proc.returncode
                delay = 1.0 if time.monotonic() - started > 60 else min(60.0, delay * 2)
                self.restarts += 1
                log.error("the ledger upkeep process exited (%s); restarting in %.0f s", code, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        finally:
            stopper.cancel()
            await self._stop()

    async def _stop(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # its loop ends at EOF, after the pass it is in
        try:
            await asyncio.wait_for(proc.wait(), 10.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()


if __name__ == "__main__":
    main()
