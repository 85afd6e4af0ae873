"""Mail for the email intent: an account, IMAP reading, SMTP sending, OAuth2 sign-in."""

from __future__ import annotations

from .account import PROVIDERS, AccountError, MailAccount, is_gmail
from .contacts import matches
from .imap import Contact, Imap, Mail
from .oauth import OAuthError, TokenSource
from .request import ACTIONS, MailRequest, date_range, parse_request
from .smtp import check_login, compose, send
from .spoken import contact_list, mail_list

__all__ = [
    "ACTIONS",
    "PROVIDERS",
    "AccountError",
    "Contact",
    "Imap",
    "Mail",
    "MailAccount",
    "MailRequest",
    "OAuthError",
    "TokenSource",
    "check_login",
    "compose",
    "contact_list",
    "date_range",
    "is_gmail",
    "mail_list",
    "matches",
    "parse_request",
    "send",
]
