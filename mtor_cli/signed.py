"""Signed REST calls to a broker: the account and sysop commands' transport.

Each request is signed with the user's key (broker.protocol.sign_request over
method, path, time and body), so the broker knows who asks without a session,
and a captured request cannot be replayed. A broker error comes back as
:class:`mtor_cli.client.RealmError` with the broker's stable code.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from broker.protocol import loads, sign_request
from mtor_cli.client import RealmError, check_urls, http_url, tls_context

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

def broker_url(option: str | None) -> str:
    """--broker, else the configured broker, else the running embedded realm."""
    from mtor_cli.options import configured_broker
    from mtor_cli.realm import running_url

    url = option or configured_broker() or running_url()
    if url is None:
        raise RealmError(
            "unreachable",
            "no broker is configured and the embedded realm is not running",
            "pass --broker ws://HOST:PORT, or start one with `mtor realm start`",
        )
    return url


def call(
    url: str,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    account: LocalAccount | None = None,
    signed: bool = True,
    timeout: float = 10.0,
) -> Any:
    """Send one (signed) request and return its JSON answer; raises RealmError.
    Given several brokers of a realm (comma-separated), the first that answers
    (each try signed afresh: a realm takes a signature once)."""
    failures = []
    for one in check_urls(url):
        try:
            return _call_one(one, method, path, payload, account, signed, timeout)
        except RealmError as exc:
            if exc.code != "unreachable":
                raise
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise RealmError(
        "unreachable",
        "none of the realm's brokers answers: " + "; ".join(f.message for f in failures),
        "check --broker / MTOR_BROKER, or start one with `mtor broker serve`",
    )


def _call_one(
    url: str, method: str, path: str, payload: dict[str, Any] | None, account: LocalAccount | None, signed: bool,
    timeout: float,
) -> Any:
    import urllib.error
    import urllib.request

    body = b"" if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        if account is None:
            from mtor_cli.identity import load_or_create_account

            account = load_or_create_account()
        ts, nonce = int(time.time()), secrets.token_hex(16)
        headers["X-MTOR-Address"] = account.address
        headers["X-MTOR-Timestamp"] = str(ts)
        headers["X-MTOR-Nonce"] = nonce
        headers["X-MTOR-Signature"] = sign_request(account.key, method, path, ts, nonce, body)
    target = http_url(url, path)
    request = urllib.request.Request(target, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls_context(target)) as resp:
            return loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError):
            raise RealmError("internal", f"the broker answered HTTP {exc.code} for {path}", "check the broker's log") from None
        detail = err.get("detail") if isinstance(err.get("detail"), dict) else None
        raise RealmError(err["code"], err["message"], err.get("hint", ""), detail=detail) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RealmError(
            "unreachable",
            f"cannot reach the broker at {target}: {getattr(exc, 'reason', exc)}",
            "check --broker / MTOR_BROKER, or start one with `mtor broker serve`",
        ) from exc


def call_or_fail(
    broker: str | None,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    key: Any = None,
    signed: bool = True,
) -> Any:
    """:func:`call` for a command: on failure print the one error line and exit."""
    from mtor_cli import output

    account = None
    if key is not None:
        from mtor_cli.identity import load_or_create_account

        account = load_or_create_account(key)
    try:
        return call(broker_url(broker), method, path, payload, account, signed)
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
