"""Credentials in storage URLs: masked in everything cnnsearch prints or stores (issue 26).

A PostgreSQL URL may carry a password (``postgresql://user:pw@host/db`` or
``?password=``). :func:`mask_url` is the form every message, report and JSON
document shows; :func:`scrub` removes the password from text a driver wrote
(an error message may echo part of a badly split URL).
"""

from __future__ import annotations

#: Query parameters of a database URL that carry a secret (libpq's and common drivers' names).
_SECRET_PARAMS = ("password", "passwd", "pwd", "sslpassword", "secret", "token")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: every URL cnnsearch prints or stores goes through this.

    The user information ends at the *last* ``@`` before the query, so a password holding a raw ``@``
    or ``/`` (which SQLAlchemy's parser splits at the first ``@``) is masked whole; so is a password
    given as a query parameter (``?password=...``).
    """
    import re

    if "://" not in url or url.startswith(("sqlite:", "journal:")):
        return url
    scheme, rest = url.split("://", 1)
    head, q, query = rest.partition("?")
    if "@" in head:
        userinfo, host = head.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        head = f"{user}:***@{host}" if colon else f"{userinfo}@{host}"
    if q:
        names = "|".join(_SECRET_PARAMS)
        query = re.sub(rf"(?i)(^|&)({names})=[^&]*", r"\1\2=***", query)
    return f"{scheme}://{head}{q}{query}"


def secrets_of(url: str) -> list[str]:
    """The secret strings of a storage URL (its password, raw and decoded), to scrub from any message."""
    from urllib.parse import unquote

    if "://" not in url or url.startswith(("sqlite:", "journal:")):
        return []
    head, _, query = url.split("://", 1)[1].partition("?")
    found = []
    if "@" in head:
        _, colon, password = head.rsplit("@", 1)[0].partition(":")
        if colon and password:
            found += [password, unquote(password)]
            # A raw "@" in it: drivers split at the first "@" and may echo the rest as the host name.
            parts = password.split("@")
            found += ["@".join(parts[i:]) + "@" for i in range(1, len(parts))]
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key.lower() in _SECRET_PARAMS and value:
            found += [value, unquote(value)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` replaced by ``***``."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text


__all__ = ["mask_url", "scrub", "secrets_of"]
