"""Folding the broker's pushes into what the panes show."""

from __future__ import annotations

from broker.protocol import Broadcast, Stats
from mtor_cli.tui import ConnectionStatus, RealmState
from mtor_cli.tui.state import RECENT_INTENTS, SERIES_SECONDS

ME = "0x" + "ab" * 20
NOW = 1_800_000_000.0


def state_at(now: float = NOW) -> RealmState:
    clock = [now]
    state = RealmState(lambda: clock[0])
    state.apply(ConnectionStatus("online", address=ME))
    return state


def counters(completed: int, failed: int = 0) -> Stats:
    return Stats(topic="stats", data={"intents": {"completed": completed, "failed": failed}, "slots_busy": 1,
                                      "slots_total": 4, "queued": 2})


def worker(wid: str, running: int = 0, slots: int = 2, state: str = "healthy", failure_rate: float = 0.0) -> dict:
    return {"id": wid, "address": "0x" + "cd" * 20, "slots": slots, "running": running,
            "capabilities": [{"intent": "chat", "models": ["m1", "m2"]}, {"intent": "vision", "models": ["m1"]}],
            "health": {"state": state, "failure_rate": failure_rate, "latency_ms": 2.5}}


def test_throughput_counts_finished_intents_per_second_after_a_baseline():
    state = state_at()
    state.apply(counters(100, 3))  # the snapshot on subscribe: only a baseline
    assert state.throughput.recent(int(NOW)) is None
    state.apply(counters(110, 5))
    state.apply(counters(118, 5))
    assert state.throughput.values(int(NOW))[-1] == 20
    assert state.totals["failed"] == 5 and state.totals["slots_total"] == 4


def test_a_restarted_broker_resets_the_baseline_instead_of_going_negative():
    state = state_at()
    state.apply(counters(100))
    state.apply(counters(2))
    state.apply(counters(5))
    assert state.throughput.values(int(NOW))[-1] == 3


def test_series_cover_three_minutes_with_zeros_where_nothing_happened():
    state = state_at()
    state.apply(counters(0))
    state.apply(counters(4))
    values = state.throughput.values(int(NOW) + 10)
    assert len(values) == SERIES_SECONDS
    assert values[-11] == 4 and values[-10:] == [0.0] * 10


def test_latency_is_the_time_from_queued_to_done():
    state = state_at()
    events = [
        {"guid": "g1", "intent": "chat", "state": "queued", "ts": 10.0, "user": ME},
        {"guid": "g1", "intent": "chat", "state": "running", "worker": "w1", "ts": 10.1},
        {"guid": "g1", "intent": "chat", "state": "done", "worker": "w1", "ts": 10.5},
        {"guid": "g2", "intent": "chat", "state": "queued", "ts": 11.0},
        {"guid": "g2", "intent": "chat", "state": "done", "worker": "w1", "ts": 12.5},
    ]
    state.apply(Stats(topic="intents", data={"events": events, "live": []}))
    row = state.intents["g1"]
    assert (row.status, row.worker, row.elapsed_s) == ("done", "w1", 0.5)
    assert state.latency.recent(int(NOW)) == 1000.0  # mean of 500 ms and 1500 ms


def test_live_intents_fill_in_what_no_event_described():
    state = state_at()
    live = [{"guid": "old", "intent": "imagine", "state": "running", "worker": "w9", "age_s": 3.0}]
    state.apply(Stats(topic="intents", data={"events": [], "live": live}))
    assert state.intents["old"].status == "running"
    state.apply(Stats(topic="intents", data={"events": [{"guid": "old", "state": "done", "ts": 1.0}], "live": live}))
    assert state.intents["old"].status == "done"


def test_recent_intents_keep_the_newest_and_report_the_evicted():
    state = state_at()
    events = [{"guid": f"g{n}", "intent": "chat", "state": "queued", "ts": float(n)} for n in range(RECENT_INTENTS + 5)]
    state.apply(Stats(topic="intents", data={"events": events}))
    changed, evicted = state.take_intent_changes()
    assert len(state.intents) == RECENT_INTENTS
    assert evicted == {f"g{n}" for n in range(5)}
    assert "g0" not in changed and f"g{RECENT_INTENTS + 4}" in changed


def test_workers_show_load_state_and_health():
    state = state_at()
    state.apply(Stats(topic="workers", data={"workers": [
        worker("idle"), worker("half", running=1), worker("full", running=2),
        worker("bad", state="quarantined", failure_rate=0.75),
    ]}))
    rows = state.take_workers()
    assert {wid: row.state for wid, row in rows.items()} == {
        "idle": "ready", "half": "working", "full": "busy", "bad": "quarantined"
    }
    assert rows["bad"].health == 0.25 and rows["half"].load == 1
    assert rows["idle"].intents == ["chat", "vision"] and rows["idle"].models == ["m1", "m2"]


def test_a_burst_of_worker_snapshots_is_parsed_once_at_repaint():
    state = state_at()
    for n in range(50):
        state.apply(Stats(topic="workers", data={"workers": [worker("w", running=n % 3)]}))
    assert state.take_dirty() >= {"workers"}
    assert state.take_workers()["w"].load == 49 % 3


def test_spending_counts_my_captures_and_costs_reach_the_intents():
    state = state_at()
    assert state.spent is None
    state.apply(Stats(topic="intents", data={"events": [{"guid": "g1", "state": "queued", "ts": 1.0}]}))
    state.apply(Stats(topic="ledger", data={"events": []}))
    assert state.spent == 0
    state.apply(Stats(topic="ledger", data={"events": [
        {"kind": "hold", "guid": "g1", "user": ME, "amount": 50},
        {"kind": "capture", "guid": "g1", "user": ME, "amount": 30},
        {"kind": "capture", "guid": "g2", "user": "0x" + "99" * 20, "amount": 70},
    ]}))
    assert state.spent == 30
    assert state.intents["g1"].cost == 30
    assert state.balance is None  # a free realm reports none
    state.apply(Stats(topic="ledger", data={"events": [], "balance": 970}))
    assert state.balance == 970


def test_queue_depth_and_broadcasts():
    state = state_at()
    state.apply(Stats(topic="queue", data={"intents": {"chat": {"depth": 3, "users": {ME: 3}}}, "total": 3}))
    state.apply(Broadcast(message="maintenance at noon"))
    assert state.queue == {"chat": 3}
    assert state.broadcast == "sysop: maintenance at noon"
    assert {"queue", "connection"} <= state.take_dirty()
