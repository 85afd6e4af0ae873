"""`mtor sysop ...` end to end: the operator grants, a sysop acts, others are refused,
a banned user is cut off mid-session, and broadcasts reach connected clients."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from broker import protocol as p
from mtor_cli.client import RealmClient, RealmError
from mtor_cli.identity import load_or_create_account
from tests.mtor_cli.test_history import echo_realm, key_file, mtor
from tests.support.realm import ThreadRealm, get_json, mtor_command, process_env, wait_until


def _ok(*args: str) -> Any:
    result = mtor(*args)
    assert result.exit_code == 0, result.output
    return result


def test_sysop_commands_end_to_end(tmp_path: Path) -> None:
    op_key, op_address = key_file(tmp_path, "operator")
    realm = echo_realm(tmp_path, operator=op_address)
    try:
        _run(realm, tmp_path, op_key)
    finally:
        realm.stop()


def _run(realm: ThreadRealm, tmp_path: Path, op_key: str) -> None:
    url = realm.url
    sys_key, sys_address = key_file(tmp_path, "sysop")
    user_key, user_address = key_file(tmp_path, "user")

    refused = mtor("sysop", "ban", user_address, "-b", url, "--key", sys_key)
    assert refused.exit_code == 1
    assert "is not a sysop" in refused.stderr and "[forbidden]" in refused.stderr and "mtor sysop grant" in refused.stderr

    _ok("sysop", "grant", sys_address, "-b", url, "--key", op_key)
    not_operator = mtor("sysop", "grant", user_address, "-b", url, "--key", sys_key)
    assert not_operator.exit_code == 1 and "is not the realm's operator" in not_operator.stderr

    workers = json.loads(_ok("sysop", "workers", "-b", url, "--key", sys_key, "--json").stdout)["workers"]
    assert [w["name"] for w in workers] == ["echo-box"]
    worker_id = workers[0]["id"]
    assert "echo-box" in _ok("sysop", "workers", "-b", url, "--key", sys_key).stdout
    for action in ("pause", "resume"):
        assert f"worker {action} {worker_id}: done" in _ok("sysop", "worker", action, worker_id, "-b", url, "--key", sys_key).stdout

    user = load_or_create_account(Path(user_key))

    async def session() -> None:
        async with RealmClient(url, user) as client:
            pushes = client.subscribe(["stats"])
            assert isinstance(await anext(pushes), p.Stats)
            sent = await asyncio.to_thread(mtor, "sysop", "broadcast", "back in 5 minutes", "-b", url, "--key", sys_key)
            assert sent.exit_code == 0, sent.output
            while True:
                push = await asyncio.wait_for(anext(pushes), 5)
                if isinstance(push, p.Broadcast):
                    break
            assert push.message == "back in 5 minutes" and push.sender == sys_address
            # A long echo is running when the ban lands: it ends, and the session is cut off.
            asking = asyncio.create_task(client.ask("slow " * 20, intent="echo", params={"delay_s": 0.2}))
            await asyncio.sleep(0.5)
            banned = await asyncio.to_thread(
                mtor, "sysop", "ban", user_address, "--reason", "spamming", "-b", url, "--key", sys_key
            )
            assert banned.exit_code == 0, banned.output
            with pytest.raises(RealmError) as info:
                await asyncio.wait_for(asking, 10)
            assert info.value.code == "banned" and "spamming" in info.value.message

        with pytest.raises(RealmError) as again:
            async with RealmClient(url, user):
                pass
        assert again.value.code == "banned"

    asyncio.run(session())
    assert json.loads(_ok("profile", "show", "-b", url, "--key", user_key, "--json").stdout)["banned"] == "spamming"
    _ok("sysop", "unban", user_address, "-b", url, "--key", sys_key)

    async def back() -> str:
        async with RealmClient(url, user) as client:
            guid = p.SubmitQuery(guid="held-up", prompt="wait " * 20, intent="echo", params={"delay_s": 0.2})
            events = client.submit(guid)
            assert isinstance(await anext(events), p.Accepted)
            done = await asyncio.to_thread(mtor, "sysop", "terminate", "held-up", "-b", url, "--key", sys_key)
            assert done.exit_code == 0, done.output
            async for event in events:
                last = event
            assert isinstance(last, p.Error)
            return last.message

    assert "terminated by a sysop" in asyncio.run(back())

    audit = json.loads(_ok("sysop", "audit", "-b", url, "--key", op_key, "--json").stdout)["audit"]
    actions = [(e["action"], e["outcome"]) for e in reversed(audit)]
    assert actions == [
        ("ban", "refused"), ("grant", "ok"), ("grant", "refused"), ("worker pause", "ok"), ("worker resume", "ok"), ("broadcast", "ok"), ("ban", "ok"), ("unban", "ok"),
        ("terminate", "ok"),
    ]
    removed = _ok("sysop", "worker", "remove", worker_id, "--reason", "retired", "-b", url, "--key", sys_key)
    assert f"worker remove {worker_id}: done" in removed.stdout


def test_a_broadcast_reaches_a_running_mtor_ask(tmp_path: Path) -> None:
    op_key, op_address = key_file(tmp_path, "operator")
    realm = echo_realm(tmp_path, operator=op_address)
    try:
        asking = subprocess.Popen(
            mtor_command("ask", "-b", realm.url, "-i", "echo", "-p", "delay_s=0.2", "one two three four five six"),
            env=process_env(tmp_path / "user"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: (get_json(realm.url, "/v1/stats") or {}).get("running") == 1, 30, "the ask to be running")
        _ok("sysop", "broadcast", "maintenance at noon", "-b", realm.url, "--key", op_key)
        out, err = asking.communicate(timeout=60)
    finally:
        realm.stop()
    assert asking.returncode == 0, err
    assert out == "one two three four five six\n"
    assert f"broadcast from {op_address}: maintenance at noon" in err
