"""An OAuth2 provider on 127.0.0.1 that behaves like Google's for an installed app.

- ``GET /auth``: the consent page. It approves at once (``deny`` refuses) and
  redirects to the app's loopback ``redirect_uri`` with ``code`` and ``state``.
- ``POST /token``: ``authorization_code`` (PKCE S256 checked) and
  ``refresh_token`` grants, answering in Google's shape; a revoked refresh
  token is ``400 invalid_grant`` as Google answers it.
- ``POST /introspect``: RFC 7662 introspection, which Dovecot's oauth2
  passdb asks to check an XOAUTH2 bearer token.

:func:`client_file` writes the JSON the Google Cloud console downloads for a
Desktop client, pointing at this server. ``browser.py`` beside this module
plays the person's browser (``BROWSER=... %s``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BROWSER = Path(__file__).with_name("browser.py")


class OAuthProvider:
    def __init__(self, client_id: str = "mtor-test.apps.googleusercontent.com", client_secret: str = "s3cret") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.email = ""  # whose consent the next /auth gives
        self.deny = False
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh: dict[str, str] = {}  # refresh token -> email
        self.access: dict[str, str] = {}  # access token -> email
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-provider", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OAuthProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def user_for(self, access_token: str) -> str | None:
        return self.access.get(access_token)

    def revoke_all(self) -> None:
        self.refresh.clear()
        self.access.clear()

    def client_file(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "installed": {
                        "client_id": self.client_id,
                        "project_id": "mtor-test",
                        "auth_uri": f"{self.url}/auth",
                        "token_uri": f"{self.url}/token",
                        "client_secret": self.client_secret,
                        "redirect_uris": ["http://localhost"],
                    }
                }
            )
        )
        return path

    # --- the endpoints -------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        redirect = query["redirect_uri"]
        assert redirect.startswith("http://127.0.0.1:"), redirect
        if self.deny or query.get("client_id") != self.client_id:
            answer = {"error": "access_denied", "state": query.get("state", "")}
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = dict(query)
            answer = {"code": code, "state": query["state"], "scope": query["scope"]}
        return 302, {"Location": redirect + "?" + urllib.parse.urlencode(answer)}, b""

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {}, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        if form.get("grant_type") == "authorization_code":
            asked = self.codes.pop(form.get("code", ""), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if asked is None or asked["redirect_uri"] != form.get("redirect_uri") or asked["code_challenge"] != challenge:
                return 400, {}, {"error": "invalid_grant", "error_description": "Bad Request"}
            refresh = "1//" + secrets.token_urlsafe(24)
            self.refresh[refresh] = asked.get("login_hint", self.email)
            return 200, {}, {**self._access(refresh), "refresh_token": refresh}
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh:
                return 400, {}, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            return 200, {}, self._access(form["refresh_token"])
        return 400, {}, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}

    def _access(self, refresh: str) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(24)
        self.access[token] = self.refresh[refresh]
        return {"access_token": token, "expires_in": 3599, "scope": "https://mail.google.com/", "token_type": "Bearer"}

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        email = self.access.get(form.get("token", ""))
        return 200, {}, {"active": True, "email": email} if email else {"active": False}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                provider.requests.append((url.path, query))
                if url.path == "/auth":
                    self._answer(*provider._authorize(query))
                else:
                    self._answer(404, {}, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                provider.requests.append((self.path, form))
                routes = {"/token": provider._token, "/introspect": provider._introspect}
                route = routes.get(self.path)
                self._answer(*(route(form) if route else (404, {}, {"error": "not_found"})))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def browser_command() -> str:
    """A ``BROWSER`` value that makes ``webbrowser.open`` run browser.py with this interpreter."""
    return f"{sys.executable} {BROWSER} %s"
