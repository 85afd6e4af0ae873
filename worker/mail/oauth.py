"""OAuth2 for mail: the installed-app flow's pieces and XOAUTH2 access tokens.

The flow (RFC 8252, with PKCE): open :func:`authorization_url` in the
person's browser, receive the code on a loopback redirect, trade it with
:func:`exchange_code` for a refresh token. Afterwards :class:`TokenSource`
trades the refresh token for short-lived access tokens, which
:func:`xoauth2` turns into the string IMAP and SMTP servers expect.

Google's endpoints are the defaults; every URL is a setting, so any OAuth2
provider with the same flow (and the tests' server on 127.0.0.1) fits.
Blocking (urllib), bounded by ``timeout_s``: mail work runs in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from broker.protocol import MtorError

GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GMAIL_SCOPE = "https://mail.google.com/"


class OAuthError(MtorError):
    """The provider refused (``refused``: a bad or revoked grant: ``login_failed``)
    or could not be reached (``upstream_unavailable``)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__("login_failed" if refused else "upstream_unavailable", message)
        self.refused = refused


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def authorization_url(
    auth_url: str, client_id: str, redirect_uri: str, state: str, pkce: Pkce, login_hint: str = "",
    scope: str = GMAIL_SCOPE,
) -> str:  # fmt: skip
    """Where to send the person's browser. ``access_type=offline`` and
    ``prompt=consent`` make Google hand out a refresh token every time."""
    query = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scope,
        "access_type": "offline",
        "prompt": "consent",
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    if login_hint:
        query["login_hint"] = login_hint
    return auth_url + ("&" if "?" in auth_url else "?") + urllib.parse.urlencode(query)


def _post(url: str, form: dict[str, str], timeout_s: float) -> dict[str, Any]:
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read())
        except ValueError:
            payload = {}
        reason = payload.get("error_description") or payload.get("error") or f"HTTP {exc.code}"
        # 400/401 mean the grant or the client is bad: signing in again fixes it.
        raise OAuthError(f"the sign-in was refused: {reason}", refused=exc.code in (400, 401)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OAuthError(f"{urllib.parse.urlsplit(url).netloc} cannot be reached ({reason})", refused=False) from None


def exchange_code(
    token_url: str, client_id: str, client_secret: str, code: str, redirect_uri: str, pkce: Pkce,
    timeout_s: float = 30.0,
) -> dict[str, Any]:  # fmt: skip
    """The token response for an authorization code: access_token, refresh_token, expires_in."""
    return _post(
        token_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": redirect_uri,
            "code_verifier": pkce.verifier,
        },
        timeout_s,
    )


class TokenSource:
    """Access tokens from a refresh token, cached until a minute before they expire."""

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, refresh_token: str, timeout_s: float = 20.0
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.timeout_s = timeout_s
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def access_token(self) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._expires:
                return self._token
            payload = _post(
                self.token_url,
                {
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh_token,
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
                self.timeout_s,
            )
            token = payload.get("access_token")
            if not isinstance(token, str) or not token:
                raise OAuthError("the token endpoint answered without an access token", refused=False)
            self._token = token
            self._expires = time.monotonic() + max(0.0, float(payload.get("expires_in", 3600)) - 60.0)
            return token

    def forget(self) -> None:
        """Drop the cached token (the server refused it): the next call refreshes."""
        with self._lock:
            self._token = ""


def xoauth2(user: str, access_token: str) -> str:
    """The SASL XOAUTH2 initial response, before base64 (imaplib and smtplib encode it)."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"
