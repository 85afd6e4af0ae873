"""The broker's calls into Billing: hold on accept, capture on result, release on failure or cancel."""

from __future__ import annotations

from typing import Any

import aiohttp

from broker import Billing, InsufficientFunds
from broker.billing import PaymentRefused
from broker.protocol import Accepted, Authorisation, Error, Result, Usage, Welcome, Work, WorkResult
from tests.support.peers import FakeWorker, TestClient, echo, fail, hang, new_account

PRICE = 100
COST = 60


class DictBilling:
    """Balances in a dict; every call recorded."""

    def __init__(self, balances: dict[str, int]) -> None:
        self.balances = balances
        self.holds: dict[str, tuple[str, int]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.durable: list[tuple[Any, ...]] = []  # the calls as of the last commit
        self.usages: list[dict[str, int]] = []  # what each capture was told
        self.authorised: dict[str, Any] | None = None  # terms: authorisations are required

    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        self.calls.append(("quote", user, intent))
        return PRICE

    def hold(self, user: str, guid: str, amount: int, authorisation: Authorisation | None) -> None:
        if self.authorised is not None and (authorisation is None or authorisation.total < amount):
            raise PaymentRefused("bad_authorisation", "sign it", "the SDK signs", needed=amount)
        balance = self.balances.get(user, 0)
        if balance < amount:
            raise InsufficientFunds(balance, amount)
        self.balances[user] = balance - amount
        self.holds[guid] = (user, amount)
        self.calls.append(("hold", user, guid, amount))

    def capture(self, guid: str, worker: str, intent: str, usage: dict[str, int]) -> int:
        user, amount = self.holds.pop(guid)
        self.balances[user] += amount - COST
        self.balances[worker] = self.balances.get(worker, 0) + COST
        self.calls.append(("capture", guid, worker, intent))
        self.usages.append(usage)
        return COST

    def release(self, guid: str) -> None:
        user, amount = self.holds.pop(guid)
        self.balances[user] += amount
        self.calls.append(("release", guid))

    def balance(self, user: str) -> int:
        return self.balances.get(user, 0)

    def earnings(self, workers: list[str]) -> dict[str, int]:
        return {w: self.balances.get(w, 0) for w in workers}

    def commit(self) -> None:
        self.durable = list(self.calls)

    def terms(self, user: str) -> dict[str, Any] | None:
        return None if self.authorised is None else {**self.authorised, "committed": 0}

    def status(self) -> dict[str, Any]:
        return {
            "state": "failing",
            "failures": 7,
            "last_error": "ChainError: cannot reach the chain",
            "settled_epochs": 2,
            "unsettled_receipts": 3,
            "oldest_unsettled_s": 12.5,
            "capture_failures": 0,
            "process": "running",
            "restarts": 1,
        }


class LedgerRefusal(Exception):
    """What a ledger error looks like to the broker: a code, a message, a hint."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, ""


class DictDesk:
    """A money desk with fixed answers: what the broker's money routes pass through."""

    def chain(self) -> dict[str, Any]:
        return {"chain_id": 31337, "token": "0x" + "cd" * 20, "ledger": TERMS["contract"], "dev": True}

    def prices(self) -> dict[str, Any]:
        return {"fee_bps": 1000, "prices": [{"intent": "chat", "unit": "query", "price": PRICE, "typical_hold": PRICE}]}

    def proof(self, address: str) -> dict[str, Any]:
        return {"address": address, "epoch": 2, "cumulative": 10**20, "proof": ["0x" + "11" * 32], "root": "0x"}

    def receipts(self, epoch: int) -> bytes:
        if epoch != 1:
            raise LedgerRefusal("unknown_epoch", f"no epoch {epoch} has been closed")
        return b'{"epoch": 1, "receipts": []}'

    def wallet(self, address: str) -> dict[str, Any]:
        return {"address": address, "available": 5}

    def earnings(self, address: str) -> dict[str, Any]:
        return {"address": address, "unclaimed": 7}

    def sync(self, tx: str | None = None) -> dict[str, Any]:
        return {"credited": [], "tx_credited": None}

    def gas(self, address: str) -> dict[str, Any]:
        return {"address": address, "gas_wei": 1}

    def refund_voucher(self, address: str, amount: int | None) -> dict[str, Any]:
        raise LedgerRefusal("voucher_outstanding", "a voucher is not redeemed yet")

    def rpc(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": "0x7a69"}

    def close(self) -> None:
        pass


def test_dict_billing_satisfies_the_protocol() -> None:
    assert isinstance(DictBilling({}), Billing)


async def test_hold_then_capture_charges_the_cost_and_pays_the_worker(make_broker) -> None:
    account = new_account()
    billing = DictBilling({account.address: 1000})
    server = await make_broker(billing=billing)
    worker = await FakeWorker(server.url, behaviour=echo()).start()
    client = TestClient(server.url, account)
    async with client:
        await client.send({"type": "subscribe", "topics": ["ledger"]})
        assert (await client.next_other()).data["events"] == []
        guid = await client.submit("pay me", intent="chat")
        msgs = await client.collect(guid)
        # The capture was committed before the result frame was written.
        assert [c[0] for c in billing.durable] == ["quote", "hold", "capture"]
        pushed = []
        while len(pushed) < 2:
            last_ledger = await client.next_other()
            pushed += last_ledger.data["events"]
    accepted, result = msgs[0], msgs[-1]
    assert isinstance(accepted, Accepted) and accepted.price_held == PRICE
    assert isinstance(result, Result) and result.cost == COST
    assert [c[0] for c in billing.calls] == ["quote", "hold", "capture"]
    assert billing.calls[2] == ("capture", guid, worker.account.address, "chat")
    assert billing.balances[client.address] == 1000 - COST
    assert billing.balances[worker.account.address] == COST
    assert [(e["kind"], e["amount"]) for e in pushed] == [("hold", PRICE), ("capture", COST)]
    # The subscriber's own balance and the worker's earnings ride along (the TUI shows them).
    assert last_ledger.data["balance"] == 1000 - COST
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "/v1/workers") as resp:
        workers = (await resp.json())["workers"]
    assert workers[0]["earnings"] == COST
    await worker.close()


async def test_insufficient_funds_is_refused_and_nothing_is_dispatched(make_broker) -> None:
    account = new_account()
    billing = DictBilling({account.address: PRICE - 1})
    server = await make_broker(billing=billing)
    worker = await FakeWorker(server.url, behaviour=echo()).start()
    client = TestClient(server.url, account)
    async with client:
        err = await client.ask("on credit", intent="chat")
    assert isinstance(err, Error) and err.code == "insufficient_funds"
    assert err.detail == {"balance": PRICE - 1, "price": PRICE}
    assert worker.received == [] and billing.holds == {}
    assert billing.balances[client.address] == PRICE - 1
    await worker.close()


async def test_price_above_max_price_is_refused_before_any_hold(make_broker) -> None:
    account = new_account()
    billing = DictBilling({account.address: 1000})
    server = await make_broker(billing=billing)
    worker = await FakeWorker(server.url, behaviour=echo()).start()
    client = TestClient(server.url, account)
    async with client:
        err = await client.ask("cheap please", intent="chat", max_price=PRICE - 1)
    assert isinstance(err, Error) and err.code == "price_exceeded" and err.detail["price"] == PRICE
    assert [c[0] for c in billing.calls] == ["quote"] and worker.received == []
    await worker.close()


async def test_failure_and_cancel_release_the_hold(make_broker) -> None:
    account = new_account()
    billing = DictBilling({account.address: 1000})
    server = await make_broker(billing=billing)
    broken = await FakeWorker(server.url, behaviour=fail(retryable=False)).start()
    client = TestClient(server.url, account)
    async with client:
        failed = await client.ask("break", intent="chat")
        assert isinstance(failed, Error) and failed.code == "worker_failed"
        broken.behaviour = hang()
        guid = await client.submit("never mind", intent="chat")
        assert isinstance(await client.next_for(guid), Accepted)
        await client.send({"type": "cancel", "guid": guid})
        assert (await client.next_for(guid)).code == "cancelled"
    assert [c[0] for c in billing.calls] == ["quote", "hold", "release", "quote", "hold", "release"]
    assert billing.balances[client.address] == 1000 and billing.holds == {}
    await broken.close()


async def test_a_worker_reporting_impossible_usage_is_refused_and_never_billed_on_it(make_broker) -> None:
    """A negative count would pay the user and a huge one bill them everything:
    the socket refuses such a result, that attempt fails against the worker,
    and the intent is served (and billed) by an honest worker at once."""
    account = new_account()
    billing = DictBilling({account.address: 1000})
    # No heartbeats: with equal load and no latency measured, the first worker
    # to register (the liar) gets the intent first.
    server = await make_broker(billing=billing, heartbeat_s=60)

    async def mint(w: FakeWorker, work: Work) -> None:
        await w.send({"type": "result", "guid": work.guid, "text": "free money", "usage": {"prompt_tokens": -(10**6)}})

    async def absurd(w: FakeWorker, work: Work) -> None:
        await w.send({"type": "result", "guid": work.guid, "text": "x", "usage": {"completion_tokens": 10**15}})

    for behaviour in (mint, absurd):
        liar = await FakeWorker(server.url, behaviour=behaviour).start()
        honest = await FakeWorker(server.url, behaviour=echo()).start()
        client = TestClient(server.url, account)
        async with client:
            guid = await client.submit("pay me", intent="chat")
            result = (await client.collect(guid))[-1]
            refusal = await liar.next_for(guid)
            assert isinstance(refusal, Error) and refusal.code == "invalid_message"
            assert "$.usage." in refusal.message
        assert isinstance(result, Result) and result.text == "pay me" and result.worker == honest.worker_id
        assert result.usage == Usage(completion_tokens=2)
        assert billing.usages == [{"completion_tokens": 2}]
        billing.usages.clear()
        await liar.close()
        await honest.close()


async def test_a_worker_result_with_usage_at_its_bounds_is_billed(make_broker) -> None:
    account = new_account()
    billing = DictBilling({account.address: 1000})
    server = await make_broker(billing=billing)

    async def big(w: FakeWorker, work: Work) -> None:
        await w.send(WorkResult(guid=work.guid, text="long", usage=Usage(prompt_tokens=0, completion_tokens=10**7)))

    worker = await FakeWorker(server.url, behaviour=big).start()
    async with TestClient(server.url, account) as client:
        result = await client.ask("a long one", intent="chat")
    assert isinstance(result, Result) and result.cost == COST
    assert billing.usages == [{"prompt_tokens": 0, "completion_tokens": 10**7}]
    await worker.close()


TERMS = {"chain_id": 31337, "contract": "0x" + "5f" * 20, "quotes": {"chat": PRICE}}


async def test_a_paid_realm_tells_clients_what_to_sign_and_refuses_what_is_not_signed(make_broker) -> None:
    account = new_account()
    billing = DictBilling({account.address: 1000})
    billing.authorised = TERMS
    server = await make_broker(billing=billing)
    worker = await FakeWorker(server.url, behaviour=echo()).start()
    client = TestClient(server.url, account)
    async with client:
        assert isinstance(client.welcome, Welcome) and client.welcome.ledger is not None
        assert (client.welcome.ledger.chain_id, client.welcome.ledger.contract) == (31337, TERMS["contract"])
        err = await client.ask("unsigned", intent="chat")
        assert isinstance(err, Error) and err.code == "bad_authorisation"
        assert err.hint == "the SDK signs" and err.detail == {"needed": PRICE}
        signed = Authorisation(total=PRICE, signature="0x" + "00" * 65)
        result = await client.ask("signed", intent="chat", authorisation=signed)
        assert isinstance(result, Result) and result.cost == COST
    assert worker.received and [c[0] for c in billing.calls].count("hold") == 1
    await worker.close()


async def test_the_ledger_over_http_realm_status_proofs_receipts_metrics(make_broker) -> None:
    billing = DictBilling({})
    billing.authorised = TERMS
    server = await make_broker(billing=billing, money=DictDesk)
    base = server.http_url
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/v1/realm") as resp:
            realm = await resp.json()
            assert resp.status == 200 and realm["paid"] and realm["chain"]["ledger"] == TERMS["contract"]
        async with http.get(base + "/v1/ledger/status") as resp:
            assert (await resp.json())["state"] == "failing"
        address = "0x" + "ab" * 20
        async with http.get(base + f"/v1/ledger/proof/{address}") as resp:
            proof = await resp.json()
            assert proof["cumulative"] == str(10**20) and proof["address"] == address  # amounts as strings
        async with http.get(base + "/v1/ledger/proof/nobody") as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_params"
        async with http.get(base + "/v1/ledger/epochs/1") as resp:
            assert (await resp.json())["epoch"] == 1
        async with http.get(base + "/v1/ledger/epochs/9") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_epoch"
        async with http.get(base + "/v1/wallet") as resp:  # about one address: signed requests only
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "bad_signature"
        async with http.get(base + "/v1/stats") as resp:
            assert (await resp.json())["ledger"]["unsettled_receipts"] == 3
        async with http.get(base + "/metrics") as resp:
            text = await resp.text()
    assert "mtor_ledger_upkeep_ok 0.0" in text
    assert "mtor_ledger_upkeep_failures_total 7.0" in text
    assert "mtor_ledger_unsettled_receipts 3.0" in text
    assert "mtor_ledger_upkeep_restarts_total 1.0" in text


async def test_a_free_realm_has_no_ledger_over_http(make_broker) -> None:
    server = await make_broker()
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/v1/realm") as resp:
            assert (await resp.json()) == {"realm": server.config.realm, "paid": False, "chain": None}
        for path in ("/v1/ledger/status", "/v1/ledger/proof/0x" + "ab" * 20, "/v1/ledger/epochs/1"):
            async with http.get(server.http_url + path) as resp:
                assert resp.status == 404 and (await resp.json())["error"]["code"] == "free_realm"
        async with http.get(server.http_url + "/metrics") as resp:
            assert "mtor_ledger" not in await resp.text()


BIG_PRICE = 50 * 10**18  # 50 $9000: past 64 bits (18.45 $9000) in base units
BIG_COST = 20 * 10**18


class BigBilling(DictBilling):
    def quote(self, user: str, intent: str, model: str | None, params: dict[str, Any]) -> int:
        return BIG_PRICE

    def capture(self, guid: str, worker: str, intent: str, usage: dict[str, int]) -> int:
        user, amount = self.holds.pop(guid)
        self.balances[user] += amount - BIG_COST
        self.balances[worker] = self.balances.get(worker, 0) + BIG_COST
        return BIG_COST


async def test_amounts_past_64_bits_are_exact_on_the_bus_and_in_rest(make_broker) -> None:
    from tests.broker.test_accounts import signed

    account, poor = new_account(), new_account()
    billing = BigBilling({account.address: 10**22, poor.address: 10**19})
    server = await make_broker(billing=billing)
    worker = await FakeWorker(server.url, behaviour=echo()).start()
    async with TestClient(server.url, account) as client:
        guid = await client.submit("expensive", intent="chat")
        msgs = await client.collect(guid)
    accepted, result = msgs[0], msgs[-1]
    assert isinstance(accepted, Accepted) and accepted.price_held == BIG_PRICE
    assert isinstance(result, Result) and result.cost == BIG_COST
    async with TestClient(server.url, poor) as client:
        refused = await client.ask("too dear", intent="chat")
    assert isinstance(refused, Error) and refused.detail == {"balance": 10**19, "price": BIG_PRICE}

    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/v1/workers") as resp:
            assert resp.status == 200
            (row,) = (await resp.json())["workers"]
        async with http.get(server.http_url + "/v1/totals") as resp:
            assert resp.status == 200
            totals = await resp.json()
    # Beyond 2**53 REST writes amounts as decimal strings: exact for every client.
    assert row["earnings"] == str(BIG_COST)
    assert totals["tokens"]["spent"] == str(BIG_COST)
    assert totals["tokens"]["earned_by_worker"] == {worker.worker_id: str(BIG_COST)}
    (entry,) = (await signed(server, "GET", "/v1/history", account))["history"]
    assert (int(entry["price_held"]), int(entry["cost"])) == (BIG_PRICE, BIG_COST)
    await worker.close()
