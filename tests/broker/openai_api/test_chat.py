"""The real `openai` package against a realm: models, chat and legacy completions, errors, idempotency.

One free realm per module: a worker serving echo and slow-echo, and one
serving the tiny random chat model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account

from mtor_cli.signed import call
from tests.broker.openai_api.conftest import SlowEcho, echo_realm, new_key, openai_client
from tests.support.realm import ThreadRealm, get_json, wait_until
from worker.backends.base import Device
from worker.backends.chat import ChatBackend


@pytest.fixture(scope="module")
def realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[ThreadRealm]:
    r = echo_realm(tmp_path_factory.mktemp("realm") / "journal.db")
    try:
        r.add_worker([ChatBackend(str(tiny_chat_model), Device(), max_batch=4)], slots=2, name="chat")
        r.wait_workers(2)
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def user() -> Any:
    return Account.create()


@pytest.fixture(scope="module")
def key(realm: ThreadRealm, user: Any) -> dict[str, Any]:
    return new_key(realm.url, user, name="tests")


@pytest.fixture
def client(realm: ThreadRealm, key: dict[str, Any]) -> Any:
    return openai_client(realm.url, key["secret"])


@pytest.fixture(scope="module")
def chat_model(tiny_chat_model: Path) -> str:
    return tiny_chat_model.name  # a local model registers by its folder's name


def ask(client: Any, model: str, text: str, **extra: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **extra)


# --- models --------------------------------------------------------------------


def test_models_lists_every_model_a_connected_worker_serves(client: Any, chat_model: str) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"echo", "slow-echo", chat_model}
    assert models[chat_model].owned_by == "mtor"  # the realm's name
    assert models[chat_model].mtor == {"intents": ["chat"], "workers": 1}
    assert client.models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert err.value.body["code"] == "model_not_found"


def test_a_model_is_listed_while_its_worker_is_connected(realm: ThreadRealm, client: Any) -> None:
    late = realm.add_worker([SlowEcho("late-echo", Device())], name="late")
    realm.wait_workers(3)
    assert "late-echo" in {m.id for m in client.models.list().data}
    assert ask(client, "late-echo", "still here", extra_body={}).choices[0].message.content == "still here"
    realm.stop_worker(late)
    wait_until(lambda: "late-echo" not in {m.id for m in client.models.list().data}, 10, "late-echo to go")
    # Known but unserved now: 503 (an OpenAI client retries that), not 404.
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "late-echo", "anyone?")
    assert err.value.status_code == 503 and err.value.body["code"] == "no_worker"


# --- chat ------------------------------------------------------------------------


def test_chat_answers_with_the_usage_the_worker_counted(realm: ThreadRealm, client: Any, user: Any,
                                                        chat_model: str) -> None:
    answer = ask(client, chat_model, "hello there", max_tokens=6, temperature=0, seed=3)
    (choice,) = answer.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.model == chat_model and answer.object == "chat.completion"
    # The journal's record of the intent: the same usage, the same text, charged to the key's address.
    stored = call(realm.url, "GET", f"/v1/history/{answer.mtor['guid']}", account=user)
    assert stored["intent"] == "chat" and stored["status"] == "done"
    assert stored["result"]["text"] == choice.message.content
    assert answer.usage.completion_tokens == stored["result"]["usage"]["completion_tokens"] <= 6
    assert answer.usage.prompt_tokens == stored["result"]["usage"]["prompt_tokens"] > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streaming_sends_chunks_then_the_usage_then_done(client: Any, chat_model: str) -> None:
    whole = ask(client, chat_model, "tell me more", max_completion_tokens=8, temperature=0)
    chunks = list(ask(client, chat_model, "tell me more", max_completion_tokens=8, temperature=0, stream=True,
                      stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 1
    # Greedy: the stream is the same answer as the plain request, piece by piece.
    assert "".join(texts) == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_system_and_earlier_turns_reach_the_model(client: Any, chat_model: str) -> None:
    alone = ask(client, chat_model, "and now?", max_tokens=1)
    with_context = client.chat.completions.create(
        model=chat_model,
        max_tokens=1,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
        ],
    )
    assert with_context.usage.prompt_tokens > alone.usage.prompt_tokens + 5


def test_stop_ends_the_answer_at_the_first_stop_sequence(client: Any) -> None:
    plain = ask(client, "echo", "alpha beta gamma delta", stop=[" gamma", "zeta"])
    assert plain.choices[0].message.content == "alpha beta"
    assert plain.choices[0].finish_reason == "stop"
    chunks = list(ask(client, "echo", "alpha beta gamma delta", stop=" gam", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "alpha beta"


def test_an_echo_model_answers_chat_and_legacy_completions(client: Any) -> None:
    assert ask(client, "echo", "one two three").choices[0].message.content == "one two three"
    done = client.completions.create(model="echo", prompt="four five six", max_tokens=10)
    assert done.choices[0].text == "four five six" and done.object == "text_completion"
    streamed = list(client.completions.create(model="echo", prompt="seven eight", stream=True))
    assert "".join(c.choices[0].text for c in streamed) == "seven eight"


# --- idempotency, history ---------------------------------------------------------


def test_an_idempotency_key_runs_the_request_once(realm: ThreadRealm, client: Any) -> None:
    before = get_json(realm.url, "/v1/stats")["intents"]
    headers = {"Idempotency-Key": "order-42"}
    first = ask(client, "echo", "pay once", extra_headers=headers)
    raw = client.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "pay once"}], extra_headers=headers
    )
    again = raw.parse()
    assert raw.headers["Idempotent-Replayed"] == "true"
    assert again.id == first.id and again.choices[0].message.content == "pay once"
    assert again.mtor["replayed"] is True and first.mtor["replayed"] is False
    after = get_json(realm.url, "/v1/stats")["intents"]
    assert after["submitted"] - before["submitted"] == 1
    assert after["replayed"] - before["replayed"] == 1
    # The same key for another request is refused, and the client is told not to retry it.
    with pytest.raises(openai.ConflictError) as err:
        ask(client, "echo", "something else", extra_headers=headers)
    assert err.value.body["code"] == "duplicate_guid"
    assert err.value.response.headers["x-should-retry"] == "false"


def test_http_intents_are_in_the_users_history(realm: ThreadRealm, client: Any, user: Any) -> None:
    answer = ask(client, "echo", "remember me")
    history = call(realm.url, "GET", "/v1/history?limit=50", account=user)["history"]
    entry = next(e for e in history if e["guid"] == answer.mtor["guid"])
    assert (entry["intent"], entry["prompt"], entry["status"]) == ("echo", "remember me", "done")


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format.type"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages[1].role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
         "messages[0].content[0].image_url.url"),
    ],
)
def test_a_bad_request_is_400_naming_the_field(client: Any, extra: dict[str, Any], param: str) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**body)
    assert err.value.body["param"] == param, err.value.body
    assert err.value.body["message"] and err.value.body["hint"]


def test_an_image_to_a_model_that_cannot_see_is_400(client: Any) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "echo", [{"type": "text", "text": "what is it?"}, image])  # type: ignore[arg-type]
    assert "does not read images" in err.value.body["message"]


def test_keys_are_required_and_checked(realm: ThreadRealm) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        ask(openai_client(realm.url, "sk-mtor-made-up"), "echo", "hi")
    assert err.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai_client(realm.url, "sk-mtor-made-up").models.list()
