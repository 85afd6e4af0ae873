"""`mtor email login`'s OAuth2 installed-app flow: browser, loopback redirect, refresh token.

The redirect comes back to a one-shot HTTP server on 127.0.0.1 (a port the
system picks), which Google allows for Desktop clients; PKCE and a random
``state`` tie the answer to this sign-in. Nothing is stored here: the caller
saves the refresh token only after the mailbox accepted it.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from worker.mail.oauth import GOOGLE_AUTH_URL, GOOGLE_TOKEN_URL, OAuthError, Pkce, authorization_url, exchange_code

_DONE_PAGE = b"""<!doctype html><meta charset="utf-8"><title>mtor</title>
<p style="font-family:sans-serif">mtor is signed in. You can close this tab.</p>"""
_FAILED_PAGE = b"""<!doctype html><meta charset="utf-8"><title>mtor</title>
<p style="font-family:sans-serif">The sign-in did not complete; see your terminal.</p>"""


@dataclass(frozen=True)
class Client:
    """An OAuth client ("Desktop app" in the Google Cloud console)."""

    client_id: str
    client_secret: str
    auth_url: str = GOOGLE_AUTH_URL
    token_url: str = GOOGLE_TOKEN_URL

    @classmethod
    def from_file(cls, path: Path) -> Client:
        """The JSON file the console's "Download JSON" gives (``{"installed": {...}}``)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OAuthError(f"cannot read {path}: {exc}", refused=True) from None
        entry = data.get("installed") or data.get("web") if isinstance(data, dict) else None
        if not isinstance(entry, dict) or not entry.get("client_id") or not entry.get("client_secret"):
            raise OAuthError(f"{path} is not an OAuth client file (no installed.client_id)", refused=True)
        return cls(
            str(entry["client_id"]),
            str(entry["client_secret"]),
            str(entry.get("auth_uri") or GOOGLE_AUTH_URL),
            str(entry.get("token_uri") or GOOGLE_TOKEN_URL),
        )


class _Redirect(BaseHTTPRequestHandler):
    """Takes the one redirect carrying ``code`` (or ``error``) and hands it to ``server.answer``."""

    server: _RedirectServer

    def do_GET(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if "code" not in query and "error" not in query:
            self.send_response(404)  # a favicon or a stray request: keep waiting
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(_DONE_PAGE if "code" in query else _FAILED_PAGE)
        self.server.answer = query
        self.server.arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows our own progress, not request lines


class _RedirectServer(HTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Redirect)
        self.answer: dict[str, str] = {}
        self.arrived = threading.Event()


def sign_in(
    client: Client,
    login_hint: str,
    *,
    show: Callable[[str], None],
    open_browser: bool = True,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Run the flow; the token response (refresh_token, access_token, ...). OAuthError on failure."""
    server = _RedirectServer()
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, name="oauth-redirect", daemon=True)
    thread.start()
    try:
        pkce, state = Pkce.new(), secrets.token_urlsafe(24)
        url = authorization_url(client.auth_url, client.client_id, redirect_uri, state, pkce, login_hint)
        show(f"Sign in with your browser to let mtor read and send your mail:\n\n  {url}\n")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        show(f"waiting for the sign-in (up to {timeout_s:g} s) ...")
        if not server.arrived.wait(timeout_s):
            raise OAuthError(f"no sign-in arrived within {timeout_s:g} s", refused=False)
        answer = server.answer
    finally:
        server.shutdown()
        server.server_close()
    if answer.get("state") != state:
        raise OAuthError("the sign-in answer does not belong to this login (state mismatch)", refused=True)
    if "error" in answer:
        raise OAuthError(f"the sign-in was not granted: {answer['error']}", refused=True)
    tokens = exchange_code(client.token_url, client.client_id, client.client_secret, answer["code"], redirect_uri, pkce)
    if not tokens.get("refresh_token"):
        raise OAuthError(
            "Google granted access but sent no refresh token; remove mtor's access at "
            "https://myaccount.google.com/permissions and sign in again",
            refused=True,
        )
    return tokens
