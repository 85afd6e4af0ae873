"""The email intent against real mail servers on 127.0.0.1: Dovecot (IMAP) and aiosmtpd (SMTP).

Alice's mailbox is seeded over IMAP; her email worker runs behind a real
broker under her own key, and `mtor ask` is run as she would run it. A sent
mail goes through the SMTP server into Bob's Dovecot inbox, where the test
reads it back.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from broker.protocol import Work
from mtor_cli import paths
from mtor_cli.app import build_app
from tests.support.mail import Dovecot, SmtpServer, message
from tests.support.realm import ThreadRealm, mtor_command, process_env
from worker.backends.base import Device, Emitter, JobError
from worker.backends.email import EmailBackend
from worker.mail import parse_request

# The SMTP server runs without TLS on 127.0.0.1; aiosmtpd warns about AUTH over plain text.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USERS = {"alice@example.test": "alice-app-pw", "bob@example.test": "bob-pw", "empty@example.test": "empty-pw"}


def account(dovecot: Dovecot, smtp: SmtpServer, address: str = "alice@example.test", **extra: Any) -> dict[str, Any]:
    return {
        "address": address,
        "name": "Alice Liddell",
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.port,
        "imap_security": "none",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_security": "none",
        "password": USERS.get(address, ""),
        "timeout_s": 5.0,
        **extra,
    }


def today_at(hour: int, minute: int) -> datetime:
    return datetime.now().astimezone().replace(hour=hour, minute=minute, second=0, microsecond=0)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Dovecot, SmtpServer]]:
    dovecot = Dovecot(USERS).start()
    smtp = SmtpServer(dovecot).start()
    alice = "Alice Liddell <alice@example.test>"
    three_days_ago = today_at(12, 0) - timedelta(days=3)
    for msg, seen in (
        (message("Dave Brown <dave@example.test>", alice, "Invoice 42", "Please pay by Monday.", three_days_ago), True),
        (message("Bob Jones <bob@example.test>", alice, "Friday's meeting", "Move to 3pm?", today_at(0, 1)), True),
        (message("Carol White <carol@example.test>", alice, "Lunch?", "Free at noon tomorrow?", today_at(0, 2)), False),
        (message("Dave Brown <dave@example.test>", alice, "Re: Invoice 42", "Paid, thanks.", today_at(0, 3)), False),
    ):
        dovecot.append("alice@example.test", msg, seen=seen)
    sent = message(alice, "Bob Jones <bob@example.test>", "Agenda", "Here it is.", three_days_ago)
    dovecot.append("alice@example.test", sent, seen=True, folder="Sent")
    yield dovecot, smtp
    smtp.stop()
    dovecot.stop()


@pytest.fixture(scope="module")
def owner_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mtor_cli.identity import load_or_create_account

    path = tmp_path_factory.mktemp("alice") / "key.json"
    load_or_create_account(path)
    return path


@pytest.fixture(scope="module")
def email_realm(servers: tuple[Dovecot, SmtpServer], owner_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    dovecot, smtp = servers
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        realm.add_worker([EmailBackend(None, Device(), **account(dovecot, smtp))], key_path=owner_key)
        realm.wait_workers(1, "email")
        yield realm


@pytest.fixture
def as_alice(owner_key: Path, mtor_home: Path) -> Path:
    """This test's MTOR_HOME holds Alice's key: `mtor` runs as the mailbox's owner."""
    paths.key_file().parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(owner_key, paths.key_file())
    return mtor_home


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(build_app(), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ask_email(realm: ThreadRealm, text: str, *extra: str) -> Any:
    return mtor("ask", "--broker", realm.url, "--intent", "email", *extra, text)


def test_read_my_latest_emails_lists_senders_and_subjects_and_marks_nothing_read(
    email_realm: ThreadRealm, servers: tuple[Dovecot, SmtpServer], as_alice: Path
) -> None:
    dovecot, _ = servers
    done = ask_email(email_realm, "read my latest emails")
    assert done.exit_code == 0, done.stderr
    old = (today_at(12, 0) - timedelta(days=3)).date()
    assert done.stdout.strip().splitlines() == [
        "4 recent emails:",
        "1. From Dave Brown, today at 00:03: Re: Invoice 42 (unread).",
        "2. From Carol White, today at 00:02: Lunch? (unread).",
        "3. From Bob Jones, today at 00:01: Friday's meeting.",
        f"4. From Dave Brown, on {old.day} {old.strftime('%B')}: Invoice 42.",
    ]
    unread = [m["Subject"] for m, meta in dovecot.messages("alice@example.test") if b"\\Seen" not in meta]
    assert unread == ["Lunch?", "Re: Invoice 42"]  # reading aloud is not reading
    numbers = json.loads(ask_email(email_realm, "read my last 2 emails", "--json").stdout)
    assert [m["subject"] for m in numbers["data"]["messages"]] == ["Re: Invoice 42", "Lunch?"]
    assert numbers["data"]["messages"][1]["snippet"] == "Free at noon tomorrow?"


def test_any_mail_from_someone_today(email_realm: ThreadRealm, as_alice: Path) -> None:
    dave = ask_email(email_realm, "any mail from Dave today?")
    assert dave.exit_code == 0, dave.stderr
    assert dave.stdout.strip().splitlines() == [
        "1 email from Dave today:",
        "1. From Dave Brown, today at 00:03: Re: Invoice 42 (unread).",
    ]
    nobody = ask_email(email_realm, "did Zed email me today")
    assert nobody.stdout.strip() == "No emails from Zed today."


def test_contacts_come_from_recent_correspondents(email_realm: ThreadRealm, as_alice: Path) -> None:
    done = json.loads(ask_email(email_realm, "who emailed me recently", "--json").stdout)
    contacts = {c["address"]: c["count"] for c in done["data"]["contacts"]}
    # Bob wrote once and was written to once (the Sent folder), Dave wrote twice.
    assert contacts == {"bob@example.test": 2, "dave@example.test": 2, "carol@example.test": 1}


def test_a_declined_draft_sends_nothing(
    email_realm: ThreadRealm, servers: tuple[Dovecot, SmtpServer], as_alice: Path
) -> None:
    dovecot, smtp = servers
    before = len(dovecot.messages("bob@example.test"))
    # No terminal to ask on (a script) and no --yes: shown, not sent.
    script = ask_email(email_realm, "email Bob about Friday's meeting")
    assert script.exit_code == 1
    assert "To: Bob Jones <bob@example.test>\nSubject: Friday's meeting\n\nHi Bob,\n\nFriday's meeting." in script.stdout
    assert script.stderr.strip().splitlines()[-1] == (
        "mtor: not confirmed: there is no terminal to ask on; the email was not sent [declined]"
        " - hint: pass --yes to send it without asking"
    )
    # A person at a terminal who answers no.
    main, tty = pty.openpty()
    proc = subprocess.Popen(
        mtor_command("ask", "--broker", email_realm.url, "--intent", "email", "email Bob about Friday's meeting"),
        env=process_env(as_alice),
        stdin=tty,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(tty)
    os.write(main, b"n\n")
    out, err = proc.communicate(timeout=120)
    os.close(main)
    assert proc.returncode == 1, err
    assert b"Subject: Friday's meeting" in out
    # The question and the answer's error line (the person's Enter ends the question's line on a terminal).
    assert err.decode().strip().splitlines()[-1] == (
        "Send this email to Bob Jones <bob@example.test>? [y/n] (n): "
        "mtor: you declined; the email was not sent [declined] - hint: nothing was done"
    )
    assert smtp.received == [] and len(dovecot.messages("bob@example.test")) == before


def test_a_confirmed_draft_arrives_in_the_recipients_inbox(
    email_realm: ThreadRealm, servers: tuple[Dovecot, SmtpServer], as_alice: Path
) -> None:
    dovecot, smtp = servers
    done = ask_email(email_realm, "email Bob about Friday's meeting", "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["data"]["sent"] is True and answer["data"]["draft"]["written_by"] == "template"
    assert answer["text"] == "Sent to Bob Jones <bob@example.test>: Friday's meeting."
    arrived = [m for m, _meta in dovecot.messages("bob@example.test") if m["Subject"] == "Friday's meeting"]
    assert len(arrived) == 1
    mail = arrived[0]
    assert mail["From"] == "Alice Liddell <alice@example.test>" and mail["To"] == "Bob Jones <bob@example.test>"
    assert mail["Message-ID"] == answer["data"]["message_id"]
    assert mail.get_content().replace("\r\n", "\n").strip() == answer["data"]["draft"]["body"].strip()
    assert smtp.logins[-1][1] == "alice@example.test"


def test_with_a_chat_worker_the_summary_and_the_draft_are_the_chat_intents(
    servers: tuple[Dovecot, SmtpServer], owner_key: Path, as_alice: Path, tiny_chat_model: Path, tmp_path: Path
) -> None:
    from worker.backends.chat import ChatBackend

    dovecot, smtp = servers
    with ThreadRealm(tmp_path / "journal.db") as realm:
        realm.add_worker([EmailBackend(None, Device(), **account(dovecot, smtp))], key_path=owner_key)
        realm.add_worker([ChatBackend(str(tiny_chat_model), Device())])
        realm.wait_workers(2)
        # Not this machine's embedded realm: mail text goes to no chat worker unless allowed.
        kept = ask_email(realm, "read my latest emails", "--json")
        assert "summary" not in json.loads(kept.stdout)["data"]
        assert "not summarised: this realm's chat workers may be other people's" in kept.stderr
        assert mtor("config", "set", "email.summaries", "always").exit_code == 0
        read = ask_email(realm, "read my latest emails", "--json")
        assert read.exit_code == 0, read.stderr
        answer = json.loads(read.stdout)
        assert answer["data"]["summary"] and answer["text"] == answer["data"]["summary"]
        assert len(answer["data"]["messages"]) == 4  # the list stays beside the summary
        shown = ask_email(realm, "read my latest emails")
        assert shown.stdout.startswith("4 recent emails:\n1. From Dave Brown")  # the list, then the summary
        assert shown.stdout.rstrip().endswith(answer["data"]["summary"].strip())
        draft = ask_email(realm, "email Bob about Friday's meeting", "--json")
        assert draft.exit_code == 1  # no --yes, no terminal: shown, not sent
        body = json.loads(draft.stdout)["data"]["draft"]
        assert body["written_by"] == "chat" and body["body"].strip()
        assert body["to_address"] == "bob@example.test"


def test_someone_unknown_is_not_found(email_realm: ThreadRealm, as_alice: Path) -> None:
    done = ask_email(email_realm, "email Zed about the launch")
    assert done.exit_code == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "mtor: no recent correspondent is called 'Zed' [not_found]"
        " - hint: use the address instead: 'email zed@example.com about ...'"
    )


def _run(backend: EmailBackend, text: str, **params: Any) -> Any:
    import asyncio

    async def go() -> Any:
        return await backend.run(Work(guid="g", intent="email", prompt=text, params=params), Emitter("g", lambda m: None))

    return asyncio.run(go())


def test_an_empty_mailbox_says_so(servers: tuple[Dovecot, SmtpServer]) -> None:
    dovecot, smtp = servers
    backend = EmailBackend(None, Device(), **account(dovecot, smtp, "empty@example.test"))
    backend.load()
    result = _run(backend, "read my latest emails")
    assert result.text == "No recent emails." and result.data["messages"] == []
    assert _run(backend, "who emailed me").text == "No recent correspondents."


def test_a_refused_login_is_login_failed_with_a_hint(servers: tuple[Dovecot, SmtpServer]) -> None:
    dovecot, smtp = servers
    backend = EmailBackend(None, Device(), **account(dovecot, smtp, password="wrong"))
    backend.load()
    with pytest.raises(JobError) as imap_refused:
        _run(backend, "read my latest emails")
    assert imap_refused.value.code == "login_failed"
    assert "IMAP server refused the login for alice@example.test" in imap_refused.value.message
    assert "app password" in imap_refused.value.hint
    with pytest.raises(JobError) as smtp_refused:
        _run(backend, "", action="send", to="bob@example.test", subject="x", body="y")
    assert smtp_refused.value.code == "login_failed" and "SMTP server refused" in smtp_refused.value.message
    assert smtp.received == [] or all(e.mail_from == "alice@example.test" for e in smtp.received)


def test_a_mail_server_that_is_down_is_upstream_unavailable(servers: tuple[Dovecot, SmtpServer]) -> None:
    from tests.support.realm import free_port

    dovecot, smtp = servers
    backend = EmailBackend(None, Device(), **account(dovecot, smtp, imap_port=free_port()))
    backend.load()
    with pytest.raises(JobError) as down:
        _run(backend, "check my inbox")
    assert down.value.code == "upstream_unavailable" and "cannot be reached" in down.value.message


def test_send_is_never_read_from_words(servers: tuple[Dovecot, SmtpServer]) -> None:
    dovecot, smtp = servers
    backend = EmailBackend(None, Device(), **account(dovecot, smtp))
    backend.load()
    assert parse_request("send an email to bob@example.test about the launch").action == "compose"
    result = _run(backend, "send an email to bob@example.test about the launch")
    assert result.data["action"] == "compose" and "sent" not in result.data
    from worker.backends.base import BadInput

    with pytest.raises(BadInput, match="send needs to, subject, body"):
        backend.validate(Work(guid="g", intent="email", prompt="", params={"action": "send"}))


@pytest.mark.parametrize(
    ("text", "action", "who", "since", "topic"),
    [
        ("read my latest emails", "latest", None, None, ""),
        ("any mail from Alice today?", "search", "Alice", "today", ""),
        ("email Bob about Friday's meeting", "compose", "Bob", None, "Friday's meeting"),
        ("send Bob an email about lunch tomorrow", "compose", "Bob", None, "lunch tomorrow"),
        ("write to Carol saying I will be late", "compose", "Carol", None, "I will be late"),
        ("did Alice email me yesterday", "search", "Alice", "yesterday", ""),
        ("who emailed me recently", "contacts", None, None, ""),
        ("check my inbox", "latest", None, None, ""),
    ],
)
def test_requests_are_read_for_action_and_details(
    text: str, action: str, who: str | None, since: str | None, topic: str
) -> None:
    got = parse_request(text)
    assert (got.action, got.who, got.since, got.topic) == (action, who, since, topic)


def test_gmail_style_oauth_sign_in_then_a_worker_reads_and_sends_with_xoauth2(
    as_alice: Path, owner_key: Path, tmp_path: Path
) -> None:
    import stat
    import tomllib

    from tests.support.oauth import OAuthProvider, browser_command
    from tests.support.realm import spawn_worker, stop_process, wait_workers

    provider = OAuthProvider().start()
    dovecot = Dovecot(USERS, introspection_url=f"{provider.url}/introspect").start()
    smtp = SmtpServer(dovecot, token_user=provider.user_for).start()
    try:
        dovecot.append("alice@example.test", message("Bob Jones <bob@example.test>", "alice@example.test", "Hello", "Hi"))
        args = [
            "email", "login", "alice@example.test", "--oauth", "--name", "Alice Liddell",
            "--client-secret-file", str(provider.client_file(tmp_path / "client_secret.json")),
            "--imap-host", "127.0.0.1", "--imap-port", str(dovecot.port), "--imap-security", "none",
            "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port), "--smtp-security", "none",
        ]  # fmt: skip
        login = subprocess.run(
            mtor_command(*args),
            env=process_env(as_alice, BROWSER=browser_command()),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert login.returncode == 0, login.stderr
        assert "Sign in with your browser" in login.stderr and "signed in as alice@example.test (OAuth2)" in login.stderr
        (_, consent) = next(r for r in provider.requests if r[0] == "/auth")
        assert consent["scope"] == "https://mail.google.com/" and consent["access_type"] == "offline"
        assert consent["code_challenge_method"] == "S256" and consent["login_hint"] == "alice@example.test"
        config = paths.config_file()
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        saved = tomllib.loads(config.read_text())["email"]
        assert saved["auth"] == "oauth2" and saved["refresh_token"] in provider.refresh
        status = mtor("email", "status", "--json")
        assert json.loads(status.stdout)["auth"] == "oauth2" and "refresh_token" not in status.stdout

        # `mtor worker serve --intent email` takes the account from [email], under Alice's own key.
        with ThreadRealm(tmp_path / "journal.db") as realm:
            worker = spawn_worker(realm.url, as_alice, "email")
            try:
                wait_workers(realm.url, 1, "email", timeout=60)
                read = ask_email(realm, "read my latest emails")
                assert read.exit_code == 0, read.stderr
                assert "From Bob Jones" in read.stdout and "Hello" in read.stdout
                assert any(path == "/introspect" for path, _ in provider.requests)  # Dovecot checked the token
                sent = ask_email(realm, "email Bob about the launch", "--yes")
                assert sent.exit_code == 0, sent.stderr
                assert smtp.logins[-1] == ("XOAUTH2", "alice@example.test")
                assert any(m["Subject"] == "The launch" for m, _ in dovecot.messages("bob@example.test"))
                provider.revoke_all()  # the person removed mtor's access at Google
                revoked = ask_email(realm, "read my latest emails")
                assert revoked.exit_code == 1
                assert revoked.stderr.strip().splitlines()[-1] == (
                    "mtor: the OAuth server refused the login for alice@example.test: the sign-in was refused: "
                    "Token has been expired or revoked [login_failed] - hint: sign in again: "
                    "mtor email login alice@example.test"
                )
            finally:
                stop_process(worker)
    finally:
        smtp.stop()
        dovecot.stop()
        provider.stop()
