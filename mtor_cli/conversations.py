"""The user's conversations: what `mtor ask -c` continues and `mtor chat` keeps.

One SQLite file in the data dir (``conversations.db``), like `llm`'s logs:
each conversation is a list of turns (the prompt, the answer, the intent's
guid in the realm that answered it). A continued conversation sends its
earlier turns as the chat backend's ``history`` parameter, so the model sees
them; the realm itself stays stateless.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mtor_cli import paths

# Turns sent back with a continued conversation: enough context for a small
# model, and a bounded prompt however long the conversation grew.
MAX_HISTORY_TURNS = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    realm TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    guid TEXT NOT NULL,
    prompt TEXT NOT NULL,
    answer TEXT NOT NULL,
    model TEXT,
    PRIMARY KEY (conversation, seq)
);
"""


@dataclass(frozen=True)
class Turn:
    prompt: str
    answer: str


def store_path() -> Path:
    return paths.data_dir() / "conversations.db"


class Conversations:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or store_path()
        self._db = sqlite3.connect(self.path, timeout=10)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Conversations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, realm: str) -> str:
        """A new, empty conversation; returns its id."""
        cid = uuid.uuid4().hex
        now = time.time()
        with self._db:
            self._db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?)", (cid, now, now, realm))
        return cid

    def latest(self) -> str | None:
        """The conversation that had the most recent turn."""
        row = self._db.execute(
            "SELECT id FROM conversations WHERE EXISTS (SELECT 1 FROM turns WHERE conversation = id)"
            " ORDER BY updated DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def turns(self, cid: str, limit: int = MAX_HISTORY_TURNS) -> list[Turn]:
        """The last ``limit`` turns, oldest first."""
        rows = self._db.execute(
            "SELECT prompt, answer FROM turns WHERE conversation = ? ORDER BY seq DESC LIMIT ?", (cid, limit)
        ).fetchall()
        return [Turn(prompt, answer) for prompt, answer in reversed(rows)]

    def add(self, cid: str, guid: str, prompt: str, answer: str, model: str | None) -> None:
        now = time.time()
        with self._db:
            seq = self._db.execute(
                "SELECT coalesce(max(seq), 0) + 1 FROM turns WHERE conversation = ?", (cid,)
            ).fetchone()[0]
            self._db.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)", (cid, seq, now, guid, prompt, answer, model))
            self._db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid))


def history_param(turns: list[Turn]) -> list[dict[str, str]]:
    """Turns as the chat backend's ``history`` parameter (alternating user/assistant)."""
    messages: list[dict[str, str]] = []
    for turn in turns:
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": turn.answer})
    return messages
