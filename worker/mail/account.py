"""One mail account: where its IMAP and SMTP servers are and how to log in.

Built from the email backend's options, which ``mtor`` fills from the
``[email]`` table of the user's config (``mtor email login`` writes it).
Well-known providers need only the address; any other needs its hosts.
Two ways to log in: ``password`` (an app password: Fastmail, Yahoo, iCloud,
Gmail with 2-step verification ...) or ``oauth2`` (Gmail's XOAUTH2 with a
refresh token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.protocol import MtorError

from .oauth import GOOGLE_TOKEN_URL

SECURITY = ("ssl", "starttls", "none")
AUTH = ("password", "oauth2")

# domain -> (imap host, imap port, imap security, smtp host, smtp port, smtp security)
PROVIDERS: dict[str, tuple[str, int, str, str, int, str]] = {
    "gmail.com": ("imap.gmail.com", 993, "ssl", "smtp.gmail.com", 465, "ssl"),
    "googlemail.com": ("imap.gmail.com", 993, "ssl", "smtp.gmail.com", 465, "ssl"),
    "outlook.com": ("outlook.office365.com", 993, "ssl", "smtp-mail.outlook.com", 587, "starttls"),
    "hotmail.com": ("outlook.office365.com", 993, "ssl", "smtp-mail.outlook.com", 587, "starttls"),
    "yahoo.com": ("imap.mail.yahoo.com", 993, "ssl", "smtp.mail.yahoo.com", 465, "ssl"),
    "icloud.com": ("imap.mail.me.com", 993, "ssl", "smtp.mail.me.com", 587, "starttls"),
    "me.com": ("imap.mail.me.com", 993, "ssl", "smtp.mail.me.com", 587, "starttls"),
    "fastmail.com": ("imap.fastmail.com", 993, "ssl", "smtp.fastmail.com", 465, "ssl"),
    "gmx.com": ("imap.gmx.com", 993, "ssl", "mail.gmx.com", 587, "starttls"),
}
DEFAULT_PORTS = {("imap", "ssl"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143,
                 ("smtp", "ssl"): 465, ("smtp", "starttls"): 587, ("smtp", "none"): 25}  # fmt: skip


class AccountError(MtorError):
    """The account settings are missing or inconsistent."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__("not_configured", message, hint)


def is_gmail(address: str) -> bool:
    return address.rsplit("@", 1)[-1].lower() in ("gmail.com", "googlemail.com")


@dataclass(frozen=True)
class MailAccount:
    address: str
    imap_host: str
    smtp_host: str
    imap_port: int = 993
    imap_security: str = "ssl"
    smtp_port: int = 465
    smtp_security: str = "ssl"
    username: str = ""  # the login name; the address when empty
    name: str = ""  # the display name on sent mail
    auth: str = "password"
    password: str = ""
    client_id: str = ""
    client_secret: str = ""
    refresh_token: str = ""
    token_url: str = GOOGLE_TOKEN_URL
    timeout_s: float = 20.0

    @property
    def login(self) -> str:
        return self.username or self.address

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[-1].lower()

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MailAccount:
        """The account the options describe; AccountError names what is missing."""
        address = str(options.get("address") or "").strip()
        if "@" not in address:
            raise AccountError("no email account is set up", "run `mtor email login YOU@EXAMPLE.COM`")
        preset = PROVIDERS.get(address.rsplit("@", 1)[-1].lower())
        values: dict[str, Any] = {}
        if preset is not None:
            keys = ("imap_host", "imap_port", "imap_security", "smtp_host", "smtp_port", "smtp_security")
            values.update(zip(keys, preset, strict=True))
        fields = cls.__dataclass_fields__
        values.update({k: v for k, v in options.items() if k in fields and v not in (None, "")})
        values["address"] = address
        for server in ("imap", "smtp"):
            security = str(values.get(f"{server}_security", "ssl"))
            if security not in SECURITY:
                raise AccountError(f"{server}_security={security!r}", f"use one of {', '.join(SECURITY)}")
            if not values.get(f"{server}_host"):
                raise AccountError(
                    f"{address.rsplit('@', 1)[-1]} is not a provider mtor knows, and no {server}_host is set",
                    "pass --imap-host and --smtp-host to `mtor email login`",
                )
            values.setdefault(f"{server}_port", DEFAULT_PORTS[(server, security)])
            values[f"{server}_port"] = int(values[f"{server}_port"])
        auth = str(values.get("auth", "password"))
        if auth not in AUTH:
            raise AccountError(f"auth={auth!r}", "use password or oauth2")
        if auth == "password" and not values.get("password"):
            raise AccountError(f"no password is stored for {address}", f"run `mtor email login {address}`")
        if auth == "oauth2" and not (values.get("refresh_token") and values.get("client_id")):
            raise AccountError(f"{address} has no OAuth sign-in stored", f"run `mtor email login {address}`")
        values["timeout_s"] = float(values.get("timeout_s", 20.0))
        return cls(**values)
