"""``mtor federation certify``: a bounded outside check of any realm, as anyone can run it.

Four tests, each within ``budget_s`` seconds, with synthetic users (fresh keys):

- **health**: ``/healthz`` answers, a healthy worker serves the intent (and
  model), and one request completes;
- **fairness**: a heavy user queues several times the realm's free capacity,
  then a light user asks once: of the heavy requests not yet finished when
  the light one arrived, at most those running then plus half the rest may
  finish before it (a fair queue serves it within a round, a FIFO one after
  the whole backlog);
- **throughput**: requests kept in flight for one user all complete (at least
  95 %); the rate and latencies are reported;
- **failover**: a client that loses its connection mid-request resubmits the
  same guid and gets the answer; asking again after it finished replays it
  (never a second run or a second charge).

When health fails, the other tests are not run (each would only wait out
its budget) and count as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from broker import protocol as p
from mtor_cli.client import RealmClient, RealmError, http_get_json, new_guid

Figures = dict[str, Any]
Outcome = tuple[bool, str, Figures]

MAX_HEAVY = 90  # under a realm's default per-user queue cap (100)
MAX_REQUESTS = 200


@dataclass
class _Run:
    url: str
    intent: str
    model: str | None
    prompt: str
    capacity: int = 1  # free slots of healthy workers serving the intent

    def query(self, guid: str | None = None, stream: bool = False) -> p.SubmitQuery:
        return p.SubmitQuery(guid=guid or new_guid(), prompt=self.prompt, intent=self.intent, model=self.model,
                             stream=stream)


def _account() -> Any:
    from eth_account import Account

    from broker.protocol import sane_recursion_limit

    account = Account.create()
    sane_recursion_limit()
    return account


async def _ask(client: RealmClient, query: p.SubmitQuery) -> p.Result | p.Error:
    events = cast(AsyncGenerator[Any, None], client.submit(query))
    async with contextlib.aclosing(events):  # closed at once: the same guid may be asked again
        async for event in events:
            if isinstance(event, (p.Result, p.Error)):
                return event
    raise RealmError("disconnected", "the stream ended without a result", "")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)


async def _health(run: _Run) -> Outcome:
    health = await asyncio.to_thread(http_get_json, run.url, "/healthz")
    if not isinstance(health, dict) or health.get("status") != "ok":
        return False, f"/healthz says {health!r}", {}
    workers = await asyncio.to_thread(http_get_json, run.url, "/v1/workers")
    rows = workers.get("workers", []) if isinstance(workers, dict) else []
    serving = [
        w for w in rows
        if isinstance(w, dict) and (w.get("health") or {}).get("state") == "healthy"
        and any(c.get("intent") == run.intent and (run.model is None or run.model in c.get("models", []))
                for c in w.get("capabilities", []))
    ]
    what = run.intent + (f" with model {run.model}" if run.model else "")
    if not serving:
        return False, f"no healthy worker serves {what}", {"workers": len(rows)}
    run.capacity = max(1, sum(max(0, int(w.get("slots", 0)) - int(w.get("running", 0))) for w in serving))
    started = time.perf_counter()
    async with RealmClient(run.url, _account()) as client:
        answer = await _ask(client, run.query())
    if isinstance(answer, p.Error):
        return False, f"a request failed: {answer.code}: {answer.message}", {}
    latency = (time.perf_counter() - started) * 1000
    return True, f"{len(serving)} healthy worker(s) serve {what}; one request took {latency:.0f} ms", {
        "workers": len(serving), "capacity": run.capacity, "latency_ms": round(latency, 3),
    }


async def _fairness(run: _Run) -> Outcome:
    heavy_n = min(MAX_HEAVY, max(8, 4 * run.capacity))
    finished: list[str] = []  # "heavy" / "light", in the order they finished
    heavy_ms: list[float] = []
    errors: list[str] = []

    async def one(client: RealmClient, who: str, started: float) -> None:
        answer = await _ask(client, run.query())
        finished.append(who)
        if isinstance(answer, p.Error):
            errors.append(f"{who}: {answer.code}")
        elif who == "heavy":
            heavy_ms.append((time.perf_counter() - started) * 1000)

    async with RealmClient(run.url, _account()) as heavy, RealmClient(run.url, _account()) as light:
        started = time.perf_counter()
        tasks = [asyncio.create_task(one(heavy, "heavy", started)) for _ in range(heavy_n)]
        await asyncio.sleep(0)  # the heavy backlog is sent first
        waiting = heavy_n - len(finished)
        light_started = time.perf_counter()
        await one(light, "light", light_started)
        light_ms = (time.perf_counter() - light_started) * 1000
        ahead = finished.index("light") - (heavy_n - waiting)  # heavy ones that were waiting and went first
        await asyncio.gather(*tasks)
    figures = {"heavy": heavy_n, "heavy_waiting": waiting, "heavy_before_light": ahead, "light_ms": round(light_ms, 3),
               "heavy_p50_ms": _percentile(heavy_ms, 0.5), "errors": len(errors)}
    if any(e.startswith("light") for e in errors):
        return False, f"the light user's request failed ({errors[-1]})", figures
    if len(errors) > heavy_n // 10:
        return False, f"{len(errors)} of the heavy user's {heavy_n} requests failed ({errors[0]})", figures
    # Fair: the ones running when it arrived, then about one round. FIFO: every one waiting.
    allowed = run.capacity + max(1, (waiting - run.capacity) // 2)
    figures["allowed"] = allowed
    if ahead > allowed:
        return False, f"the light request waited for {ahead} of the heavy user's {waiting} waiting", figures
    return True, f"the light request finished after {ahead} of the heavy user's {waiting} waiting ({light_ms:.0f} ms)", figures


async def _throughput(run: _Run) -> Outcome:
    total = min(MAX_REQUESTS, max(16, 2 * run.capacity))
    in_flight = max(1, min(total, run.capacity))
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    errors: list[str] = []

    async def one(client: RealmClient) -> None:
        async with gate:
            started = time.perf_counter()
            answer = await _ask(client, run.query())
            if isinstance(answer, p.Error):
                errors.append(answer.code)
            else:
                latencies.append((time.perf_counter() - started) * 1000)

    async with RealmClient(run.url, _account()) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(total)))
        seconds = time.perf_counter() - started
    rate = len(latencies) / seconds if seconds else 0.0
    figures = {"requests": total, "in_flight": in_flight, "per_s": round(rate, 2),
               "p50_ms": _percentile(latencies, 0.5), "p99_ms": _percentile(latencies, 0.99), "errors": len(errors)}
    if len(latencies) < 0.95 * total:
        return False, f"{len(errors)} of {total} requests failed ({errors[0] if errors else '?'})", figures
    return True, f"{total} requests, {in_flight} in flight: {rate:.1f}/s", figures


async def _failover(run: _Run) -> Outcome:
    account = _account()
    query = run.query(stream=True)
    first = RealmClient(run.url, account)
    await first.connect()
    try:
        async for event in first.submit(query):
            if isinstance(event, p.Error):
                return False, f"the request failed before the drop: {event.code}", {}
            break  # accepted: now the connection drops
    finally:
        await first.close()
    async with RealmClient(run.url, account) as second:
        answer = await _ask(second, query)
        if isinstance(answer, p.Error):
            return False, f"the resubmitted request failed: {answer.code}: {answer.message}", {}
        again = await _ask(second, query)
    if isinstance(again, p.Error) or not again.replayed or again.cost != answer.cost:
        return False, "asking again after it finished did not replay the same answer", {}
    return True, "the dropped client got its answer on resubmitting; asking again replays it", {"cost": answer.cost}


TESTS: tuple[tuple[str, Callable[[_Run], Awaitable[Outcome]]], ...] = (
    ("health", _health),
    ("fairness", _fairness),
    ("throughput", _throughput),
    ("failover", _failover),
)


async def certify(
    url: str,
    *,
    intent: str = "chat",
    model: str | None = None,
    prompt: str = "Say hello.",
    budget_s: float = 20.0,
    progress: Callable[[str], None] = lambda name: None,
) -> dict[str, Any]:
    """Run the tests against the realm at ``url``; the report ``mtor federation certify --json`` prints."""
    run = _Run(url, intent, model, prompt)
    tests: list[dict[str, Any]] = []
    healthy = True
    for name, test in TESTS:
        if not healthy:
            tests.append({"name": name, "passed": False, "detail": "not run: the realm failed the health test",
                          "seconds": 0.0})
            continue
        progress(name)
        started = time.monotonic()
        try:
            passed, detail, figures = await asyncio.wait_for(test(run), budget_s)
        except TimeoutError:
            passed, detail, figures = False, f"did not finish within {budget_s:g} s", {}
        except RealmError as exc:
            passed, detail, figures = False, f"{exc.message} [{exc.code}]", {}
        tests.append({"name": name, "passed": passed, "detail": detail,
                      "seconds": round(time.monotonic() - started, 3), **figures})
        if name == "health" and not passed:
            healthy = False
    return {"realm": url, "intent": intent, "model": model, "budget_s": budget_s,
            "passed": all(t["passed"] for t in tests), "tests": tests}
