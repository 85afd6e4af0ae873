"""`mtor ask` end to end against a real broker with echo and tiny-chat workers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker import protocol as p
from mtor_cli.app import app
from mtor_cli.client import RealmClient, new_guid
from tests.support.realm import (
    ThreadRealm,
    free_port,
    get_json,
    mtor_command,
    process_env,
    url_for,
    wait_until,
)
from worker import Device
from worker.backends.chat import ChatBackend
from worker.backends.echo import EchoBackend


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[ThreadRealm]:
    root = tmp_path_factory.mktemp("ask-realm")
    with ThreadRealm(root / "journal.db") as realm:
        realm.add_worker([EchoBackend(None, Device())], slots=4)
        realm.add_worker([ChatBackend(str(tiny_chat_model), Device())], slots=2)
        realm.wait_workers(1, "echo")
        realm.wait_workers(1, "chat", timeout=120)
        yield realm


def mtor(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def test_echo_answer_on_stdout(realm: ThreadRealm) -> None:
    result = mtor("ask", "--broker", realm.url, "--intent", "echo", "hello there, realm")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello there, realm\n"


def test_prompt_from_stdin(realm: ThreadRealm) -> None:
    result = mtor("ask", "--broker", realm.url, "--intent", "echo", input="piped  words\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "piped  words\n"


def test_json_output_shape(realm: ThreadRealm) -> None:
    result = mtor("ask", "-b", realm.url, "-i", "echo", "--json", "json please")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {
        "guid", "intent", "text", "worker", "model", "timings", "usage", "cost", "cost_9000", "replayed", "routing",
        "data", "files",
    }  # fmt: skip
    assert data["data"] == {}  # only intents with numbers to give (weather, email...) fill it
    assert data["intent"] == "echo" and data["text"] == "json please"
    assert data["model"] == "echo" and data["worker"]
    assert data["cost"] == "0" and data["cost_9000"] == "0" and data["files"] == [] and data["replayed"] is False
    assert len(data["guid"]) == 32
    assert data["usage"]["completion_tokens"] == 2


def test_chat_streamed_text_is_the_final_answer(realm: ThreadRealm) -> None:
    args = ["ask", "-b", realm.url, "-i", "chat", "--temperature", "0", "--max-tokens", "12"]
    streamed = mtor(*args, "computer tell me a joke")
    as_json = mtor(*args, "--json", "computer tell me a joke")
    whole = mtor(*args, "--no-stream", "computer tell me a joke")
    assert streamed.exit_code == as_json.exit_code == whole.exit_code == 0, streamed.output
    text = json.loads(as_json.stdout)["text"]
    assert text.strip()
    assert streamed.stdout == text + "\n" == whole.stdout


def test_wake_word_is_stripped_and_chat_is_the_default(realm: ThreadRealm) -> None:
    result = mtor("ask", "-b", realm.url, "--json", "--temperature", "0", "Computer, tell me a joke")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["intent"] == "chat"


def test_tokens_reach_stdout_before_the_answer_is_complete(realm: ThreadRealm, tmp_path: Path) -> None:
    words = "alpha beta gamma delta epsilon zeta"
    proc = subprocess.Popen(
        mtor_command("ask", "-b", realm.url, "-i", "echo", "-p", "delay_s=0.4", words),
        env=process_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: what read() returns is all that was taken from the pipe
    )
    assert proc.stdout is not None
    first = b""
    while len(first) < 5:
        chunk = proc.stdout.read(5 - len(first))
        assert chunk, "stdout closed before the first word"
        first += chunk
    still_running = proc.poll() is None
    rest, err = proc.communicate(timeout=60)
    assert first == b"alpha"
    assert still_running, "the first word should arrive while later words are still being produced"
    assert proc.returncode == 0, err
    assert (first + rest).decode() == words + "\n"


# --- failures: one line on stderr, a documented exit code ----------------------------


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mtor: ")
    return lines[0]


def test_unreachable_broker_exits_3() -> None:
    url = url_for(free_port())
    result = mtor("ask", "--broker", url, "hello")
    assert result.exit_code == 3
    line = _one_error_line(result.stderr)
    assert "[unreachable]" in line and "127.0.0.1" in line and "hint:" in line
    assert result.stdout == ""


def test_no_worker_for_a_recognised_intent_exits_4(realm: ThreadRealm) -> None:
    result = mtor("ask", "--broker", realm.url, "imagine a neon mountain")
    assert result.exit_code == 4
    line = _one_error_line(result.stderr)
    assert "[no_worker]" in line and "imagine" in line and "hint:" in line


def test_rejected_request_exits_1(realm: ThreadRealm) -> None:
    result = mtor("ask", "-b", realm.url, "-i", "echo", "-p", "bogus=1", "hello")
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert "bogus" in line


def test_unknown_intent_exits_1(realm: ThreadRealm) -> None:
    result = mtor("ask", "-b", realm.url, "-i", "teleport", "hello")
    assert result.exit_code == 1
    assert "[unknown_intent]" in _one_error_line(result.stderr)


def test_timeout_exits_5(realm: ThreadRealm) -> None:
    result = mtor("ask", "-b", realm.url, "-i", "echo", "-p", "delay_s=1", "--timeout", "0.5", "slow words")
    assert result.exit_code == 5
    assert "[timeout]" in _one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "input", "says"),
    [
        ([], "", "prompt is empty"),
        (["--size", "big"], None, "--size"),
        (["--image", "/no/such/file.png"], None, "--image"),
        (["-p", "novalue"], None, "KEY=VALUE"),
    ],
)
def test_usage_errors_exit_2(realm: ThreadRealm, args: list[str], input: str | None, says: str) -> None:
    prompt = [] if input is not None else ["hello"]
    result = mtor("ask", "-b", realm.url, *args, *prompt, input=input)
    assert result.exit_code == 2
    assert says in _one_error_line(result.stderr)


async def test_queue_full_exits_4(tmp_path: Path) -> None:
    with ThreadRealm(tmp_path / "journal.db", queue_limit=1) as realm:
        realm.add_worker([EchoBackend(None, Device())], slots=1)
        await asyncio.to_thread(realm.wait_workers, 1, "echo")
        async with RealmClient(realm.url) as client:
            accepted: list[p.Accepted] = []
            tasks = []
            for _ in range(2):  # one runs, one waits: the queue is full
                query = p.SubmitQuery(guid=new_guid(), prompt="a b c d", intent="echo", params={"delay_s": 0.5})
                stream = client.submit(query)
                first = await anext(stream)
                assert isinstance(first, p.Accepted)
                accepted.append(first)
                tasks.append(asyncio.create_task(_drain(stream)))
            result = await asyncio.to_thread(mtor, "ask", "-b", realm.url, "-i", "echo", "one more")
            for guid in (a.guid for a in accepted):
                await client.cancel(guid)
            await asyncio.gather(*tasks)
    assert result.exit_code == 4
    assert "[queue_full]" in _one_error_line(result.stderr)


async def _drain(stream) -> None:
    async for _ in stream:
        pass


def test_ctrl_c_cancels_the_request_and_exits_130(realm: ThreadRealm, tmp_path: Path) -> None:
    before = get_json(realm.url, "/v1/stats")["intents"].get("cancelled", 0)
    proc = subprocess.Popen(
        mtor_command("ask", "-b", realm.url, "-i", "echo", "-p", "delay_s=0.5", "a b c d e f g h"),
        env=process_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdout is not None
    assert proc.stdout.read(1) == b"a"  # it is running
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "[interrupted]" in err.decode()
    wait_until(
        lambda: get_json(realm.url, "/v1/stats")["intents"].get("cancelled", 0) == before + 1,
        10,
        "the broker to count the cancelled intent",
    )


def test_broker_port_in_use_is_a_clear_error(realm: ThreadRealm) -> None:
    port = realm.url.rsplit(":", 1)[1]
    result = mtor("broker", "serve", "--port", port)
    assert result.exit_code == 1
    assert "[listen_failed]" in _one_error_line(result.stderr)


def test_broker_status_shows_workers(realm: ThreadRealm) -> None:
    as_json = mtor("broker", "status", "-b", realm.url, "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["health"]["status"] == "ok"
    intents = {c["intent"] for w in data["workers"] for c in w["capabilities"]}
    assert {"echo", "chat"} <= intents
    table = mtor("broker", "status", "-b", realm.url)
    assert table.exit_code == 0
    assert "echo" in table.stdout and "chat" in table.stdout and "healthy" in table.stdout


def test_broker_status_of_nothing_exits_3() -> None:
    result = mtor("broker", "status", "-b", url_for(free_port()))
    assert result.exit_code == 3
    assert "[unreachable]" in _one_error_line(result.stderr)


def test_an_empty_answer_says_so_and_exits_1(realm: ThreadRealm, tmp_path: Path) -> None:
    """Echo of a request that has only an attachment: no text, no file back."""
    image = tmp_path / "blank.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    result = mtor("ask", "--broker", realm.url, "--intent", "echo", "--image", str(image), input="")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    line = _one_error_line(result.stderr)
    assert "[empty_answer]" in line and "charged 0 $9000" in line and "hint:" in line


def test_continue_sends_the_earlier_turns(realm: ThreadRealm) -> None:
    """`ask -c` continues the last conversation: the model sees what was said before."""
    from mtor_cli.conversations import Conversations

    first = mtor("ask", "-b", realm.url, "--temperature", "0", "--max-tokens", "4", "my name is Ada")
    assert first.exit_code == 0, first.output
    again = mtor("ask", "-b", realm.url, "-c", "--temperature", "0", "--max-tokens", "4", "what is my name?")
    assert again.exit_code == 0, again.output
    fresh = mtor("ask", "-b", realm.url, "--temperature", "0", "--max-tokens", "4", "what is my name?")
    assert fresh.exit_code == 0, fresh.output
    with Conversations() as store:
        latest = store.latest()
        assert latest is not None
        assert [t.prompt for t in store.turns(latest)] == ["what is my name?"]  # a plain ask starts anew
        rows = store._db.execute("SELECT conversation, prompt FROM turns ORDER BY time").fetchall()
    assert rows[0][0] == rows[1][0] != rows[2][0]
    assert [r[1] for r in rows] == ["my name is Ada", "what is my name?", "what is my name?"]
    # What the realm received: the continued turn carried the first one as history.
    import sqlite3

    with sqlite3.connect(realm.config.db_path) as db:
        stored = {
            guid: json.loads(query).get("params", {})
            for guid, query in db.execute("SELECT guid, CAST(query AS TEXT) FROM intents")
        }
    with Conversations() as store:
        guids = [g for (g,) in store._db.execute("SELECT guid FROM turns ORDER BY time")]
    assert "history" not in stored[guids[0]] and "history" not in stored[guids[2]]
    assert [m["role"] for m in stored[guids[1]]["history"]] == ["user", "assistant"]
    assert stored[guids[1]]["history"][0]["content"] == "my name is Ada"


def test_chat_keeps_one_conversation_across_turns(realm: ThreadRealm) -> None:
    """`mtor chat`: each line is a turn, answered in order, all in one stored conversation."""
    from mtor_cli.conversations import Conversations

    args = ["chat", "-b", realm.url, "--temperature", "0", "--max-tokens", "4"]
    result = mtor(*args, input="hello there\nand again\n/exit\n")
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.strip()]) == 2  # one answer per turn
    assert "bye" in result.stderr
    with Conversations() as store:
        latest = store.latest()
        assert latest is not None
        assert [t.prompt for t in store.turns(latest)] == ["hello there", "and again"]
    # `chat -c` picks the same conversation up again.
    more = mtor(*args, "-c", input="one more\n")
    assert more.exit_code == 0, more.output
    with Conversations() as store:
        assert [t.prompt for t in store.turns(latest)] == ["hello there", "and again", "one more"]


def test_chat_against_no_broker_is_one_line_exit_3() -> None:
    result = mtor("chat", "-b", f"ws://127.0.0.1:{free_port()}", input="hi\n")
    assert result.exit_code == 3
    assert "[unreachable]" in _one_error_line(result.stderr)


def test_say_hello_is_answered_by_chat_with_a_note_and_explained(realm: ThreadRealm) -> None:
    """This realm serves chat and echo, no tts: "say hello" reads as conversation."""
    result = mtor("ask", "-b", realm.url, "--explain", "--json", "--temperature", "0", "--max-tokens", "4", "Say hello")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["intent"] == "chat" and data["routing"]["recognised"] == "tts"
    assert "note: no worker serves tts in this realm, so chat answers instead" in result.stderr
    assert "chat <- no worker serves tts in this realm; recognised: tts <- rule:tts:verb (score 1.00)" in result.stderr


def test_a_picture_without_a_picture_worker_names_the_fix(realm: ThreadRealm) -> None:
    result = mtor("ask", "-b", realm.url, "draw me a cat")
    assert result.exit_code == 4
    line = _one_error_line(result.stderr)
    assert "[no_worker]" in line
    assert f"mtor worker serve --broker {realm.url} --intent imagine --model PATH" in line
    assert "pip install 'mtor[imagine]'" in line


def test_the_cli_never_loads_a_recognition_model(realm: ThreadRealm, tmp_path: Path) -> None:
    """Recognition is the realm's: `mtor ask` sends the text, even where the realm
    serves more than chat and no rule decides, and imports no model stack."""
    heavy = ("torch", "transformers", "sentence_transformers")
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr))\n"
        "sys.argv = ['mtor', *sys.argv[1:]]\n"
        "from mtor_cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "ask", "-b", realm.url, "--explain", "--max-tokens", "4", "tell me about otters"],
        env=process_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
    assert "chat <- fallback:chat" in done.stderr  # this realm has no recogniser: what it did, said truthfully
