"""`mtor profile show` and `mtor profile set-nickname` against a real broker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mtor_cli.test_history import echo_realm, key_file, mtor


def test_set_nickname_is_unique_and_validated(tmp_path: Path) -> None:
    realm = echo_realm(tmp_path)
    try:
        mine, address = key_file(tmp_path, "me")
        theirs, _ = key_file(tmp_path, "them")
        done = mtor("profile", "set-nickname", "hal9000", "--broker", realm.url, "--key", mine)
        assert done.exit_code == 0, done.output
        assert done.stdout == f"{address} is now hal9000\n"

        shown = json.loads(mtor("profile", "show", "-b", realm.url, "--key", mine, "--json").stdout)
        assert shown["nickname"] == "hal9000" and shown["sysop"] is False and shown["banned"] is None
        assert "nickname: hal9000  role: user" in mtor("profile", "show", "-b", realm.url, "--key", mine).stdout

        taken = mtor("profile", "set-nickname", "HAL9000", "-b", realm.url, "--key", theirs)
        assert taken.exit_code == 1
        assert "[nickname_taken]" in taken.stderr and "hint: pick another one" in taken.stderr
        bad = mtor("profile", "set-nickname", "x", "-b", realm.url, "--key", theirs)
        assert bad.exit_code == 1 and "[bad_params]" in bad.stderr and "3-32 characters" in bad.stderr
    finally:
        realm.stop()
