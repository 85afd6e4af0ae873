"""Email by voice: "Computer" ... "email Robert about the launch", the draft read out,
and the next utterance deciding whether it is sent.

Real speech (espeak-ng) through the whole listen path, a real broker, the
email worker under the listener's own key, Dovecot and aiosmtpd on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mtor_cli.identity import load_or_create_account
from mtor_cli.intent import Recogniser
from mtor_cli.voice import Answered, Dispatched, Listener, ListenEvent, Said, WhisperTranscriber
from mtor_cli.voice.dispatch import RealmDispatcher
from mtor_cli.voice.wakeword import is_yes
from tests.support.mail import Dovecot, SmtpServer, message
from tests.support.realm import ThreadRealm
from worker import Device
from worker.backends.email import EmailBackend

from . import models
from .speech import conversation

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
USERS = {"alice@example.test": "alice-pw", "robert@example.test": "robert-pw"}


@pytest.fixture(scope="module")
def mail() -> Iterator[tuple[Dovecot, SmtpServer]]:
    dovecot = Dovecot(USERS).start()
    smtp = SmtpServer(dovecot).start()
    dovecot.append("alice@example.test", message("Robert Jones <robert@example.test>", "alice@example.test", "Hi", "Hello"))
    yield dovecot, smtp
    smtp.stop()
    dovecot.stop()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alice") / "key.json"
    load_or_create_account(path)
    return path


@pytest.fixture(scope="module")
def realm(mail: tuple[Dovecot, SmtpServer], key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    dovecot, smtp = mail
    account = {
        "address": "alice@example.test", "name": "Alice", "password": USERS["alice@example.test"],
        "imap_host": "127.0.0.1", "imap_port": dovecot.port, "imap_security": "none",
        "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "none",
    }  # fmt: skip
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        realm.add_worker([EmailBackend(None, Device(), **account)], key_path=key)
        realm.wait_workers(1, "email")
        yield realm


def listen(realm: ThreadRealm, key: Path, tmp_path: Path, *parts: str | float) -> list[ListenEvent]:
    transcriber: WhisperTranscriber = models.transcriber()
    recogniser = Recogniser(models.embedder(), cache_dir=tmp_path / "intent-cache")
    dispatcher = RealmDispatcher(realm.url, load_or_create_account(key), out_dir=tmp_path, timeout_s=60)
    return list(Listener(conversation(*parts), transcriber, recogniser, dispatcher, timeout_s=4.0).run())


def test_a_spoken_draft_is_sent_after_a_yes(realm: ThreadRealm, key: Path, mail: tuple[Dovecot, SmtpServer],
                                            tmp_path: Path) -> None:  # fmt: skip
    dovecot, _ = mail
    events = listen(realm, key, tmp_path, "Computer.", 1.0, "Email Robert about the launch.", 1.2, "Yes, please.")
    (dispatched,) = [e for e in events if isinstance(e, Dispatched)]
    assert dispatched.recognition.intent == "email"
    draft, sent = [e.reply for e in events if isinstance(e, Answered)]
    assert draft.text.startswith("Here is the draft to Robert Jones: Hi Robert,")
    assert draft.text.endswith("Shall I send it?")
    assert sent.text.startswith("Sent to Robert Jones <robert@example.test>:")
    subjects = [m["Subject"].lower() for m, _ in dovecot.messages("robert@example.test")]
    assert any("launch" in s for s in subjects)


def test_anything_but_yes_sends_nothing(realm: ThreadRealm, key: Path, mail: tuple[Dovecot, SmtpServer],
                                        tmp_path: Path) -> None:  # fmt: skip
    dovecot, smtp = mail
    before = len(smtp.received)
    events = listen(realm, key, tmp_path, "Computer.", 1.0, "Email Robert about the budget.", 1.2, "No.")
    assert len([e for e in events if isinstance(e, Answered)]) == 1  # the draft only
    assert Said("Not sent.") in events
    assert len(smtp.received) == before
    assert not any("budget" in m["Subject"].lower() for m, _ in dovecot.messages("robert@example.test"))


@pytest.mark.parametrize(
    ("said", "yes"),
    [("Yes.", True), ("yes please", True), ("Send it!", True), ("Okay, go ahead.", True), ("No.", False),
     ("yes, but change the subject", False), ("maybe later", False), ("", False)],
)  # fmt: skip
def test_only_a_plain_yes_is_a_yes(said: str, yes: bool) -> None:
    assert is_yes(said) is yes
