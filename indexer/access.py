"""Who may call ``indexer serve``, and for what: API keys with roles, read-only serving, and the
``Host`` and ``Origin`` checks that keep web pages on other sites away from the catalogue.

Every request is one of two kinds:

- a **read**: ``GET``/``HEAD``, and ``POST /search`` (it uploads a photo but changes nothing);
- a **write**: any other ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` (adding and removing items).

Rules, checked in this order by :class:`AccessGuard` before a request reaches the application:

1. ``Host`` must name this server (``--allowed-hosts``; by default the loopback names, the address
   it listens on and the machine's own names). A page on another site that rebinds its DNS name to
   this machine sends its own name and is refused. A server on a wildcard address (``0.0.0.0``)
   without ``--allowed-hosts`` cannot know every name it is reached by, so there only writes are
   held to the default list.
2. A write whose ``Origin`` is another site (not this server, not one of ``--cors-origins``) is
   refused: a browser sends that header with every cross-site post.
3. ``--read-only``: every write is refused.
4. Keys (``--api-key-file``, or one key in ``$INDEXER_API_KEY``), sent as ``Authorization: Bearer
   KEY`` or ``X-API-Key: KEY``. A write needs a write key. A read needs a key only with
   ``--keys-for-reads`` (``/health`` and the API documentation stay open). With no key configured,
   writes are accepted only when the server listens on the loopback, where only this machine's
   users reach it.
"""

from __future__ import annotations

import hmac
import logging
import ipaddress
import json
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

API_KEY_ENV = "INDEXER_API_KEY"
MIN_KEY_LENGTH = 16
ROLES = ("read", "write")
READ_POSTS = frozenset({"/search", "/search/batch"})  # POST routes that change nothing
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
DOCS_ASSETS = "/docs-assets"  # the docs pages' scripts and styles, served locally (open like the pages)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class AccessConfigError(ValueError):
    """A key file or an access option that cannot be used; the message names it."""


@dataclass(frozen=True)
class AccessPolicy:
    """What ``indexer serve`` allows; built by :meth:`from_options`."""

    keys: dict[str, str] = field(default_factory=dict)  # key -> role
    read_only: bool = False
    keys_for_reads: bool = False
    loopback_only: bool = True  # the server listens on the loopback alone
    allowed_hosts: frozenset[str] = frozenset(LOOPBACK_NAMES)
    hosts_checked_on_reads: bool = True
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, host: str, key_file: Optional[str] = None, read_only: bool = False, keys_for_reads: bool = False,
                     allowed_hosts: Optional[list[str]] = None, cors_origins: Optional[list[str]] = None,
                     environ: Optional[dict] = None) -> "AccessPolicy":
        environ = os.environ if environ is None else environ
        keys = read_key_file(Path(key_file)) if key_file else {}
        if environ.get(API_KEY_ENV):
            keys[check_key(environ[API_KEY_ENV].strip(), f"${API_KEY_ENV}")] = "write"
        if keys_for_reads and not keys:
            raise AccessConfigError(f"--keys-for-reads needs keys: pass --api-key-file FILE or set ${API_KEY_ENV}")
        loopback = is_loopback(host)
        given = [h.strip().lower() for h in allowed_hosts or [] if h.strip()]
        hosts = frozenset(given) if given else default_allowed_hosts(host)
        wildcard = host.strip("[]") in ("0.0.0.0", "::", "")
        return cls(keys=keys, read_only=read_only, keys_for_reads=keys_for_reads, loopback_only=loopback,
                   allowed_hosts=hosts, hosts_checked_on_reads=bool(given) or not wildcard,
                   cors_origins=tuple(o.strip().rstrip("/") for o in cors_origins or [] if o.strip()))

    @property
    def writes_open_without_key(self) -> bool:
        return not self.keys and self.loopback_only

    def describe(self) -> str:
        """One line for the server's start-up message."""
        if self.read_only:
            writes = "writes refused (--read-only)"
        elif self.keys:
            writes = "writes need a write key"
        elif self.loopback_only:
            writes = "writes open to this machine's users (no key configured)"
        else:
            writes = f"writes refused (no key configured; pass --api-key-file or set ${API_KEY_ENV})"
        reads = "reads need a key" if self.keys_for_reads else "reads open"
        return f"{reads}; {writes}"


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind: str) -> frozenset[str]:
    """The names a client on this machine, or one that reaches the listening address, may send."""
    names = set(LOOPBACK_NAMES)
    bind = bind.strip().strip("[]").lower()
    if bind and bind not in ("0.0.0.0", "::"):
        names.add(bind)
    if not is_loopback(bind):
        for name in (socket.gethostname(), socket.getfqdn()):
            if name:
                names.add(name.lower())
    return frozenset(names)


def check_key(key: str, source: str) -> str:
    if len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
        raise AccessConfigError(f"{source}: an API key must be at least {MIN_KEY_LENGTH} characters with no spaces "
                                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key


def read_key_file(path: Path) -> dict[str, str]:
    """Keys from a file: one per line, ``KEY`` (a write key) or ``read KEY`` / ``write KEY``; ``#`` starts a comment."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessConfigError(f"{path}: the API key file cannot be read ({exc})") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logging.getLogger("indexer").warning("%s: the API key file can be read by other users; chmod 600 it", path)
    keys = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) == 1:
            role, key = "write", words[0]
        elif len(words) == 2 and words[0] in ROLES:
            role, key = words
        else:
            raise AccessConfigError(f"{path}, line {number}: expected 'KEY', 'read KEY' or 'write KEY'")
        keys[check_key(key, f"{path}, line {number}")] = role
    if not keys:
        raise AccessConfigError(f"{path}: the API key file holds no key")
    return keys


# ----------------------------------------------------------------------------- per request


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


def is_write(method: str, path: str) -> bool:
    return method.upper() in WRITE_METHODS and path.rstrip("/") not in READ_POSTS


def host_name(host_header: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def presented_key(headers: dict[bytes, bytes]) -> Optional[str]:
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key else None


def role_of(policy: AccessPolicy, key: Optional[str]) -> Optional[str]:
    if not key:
        return None
    found = None
    for known, role in policy.keys.items():  # compare with every key, in constant time each
        if hmac.compare_digest(known.encode(), key.encode()):
            found = role
    return found


def check_request(policy: AccessPolicy, method: str, path: str, headers: dict[bytes, bytes]) -> Optional[Refusal]:
    """None when ``policy`` lets the request through, else why not."""
    write = is_write(method, path)
    if method.upper() == "OPTIONS":  # CORS preflight: answered by the CORS layer, changes nothing
        return None
    host = host_name(headers.get(b"host", b"").decode("latin-1"))
    if (write or policy.hosts_checked_on_reads) and "*" not in policy.allowed_hosts and host not in policy.allowed_hosts:
        return Refusal(403, "forbidden_host", f"this server does not answer for host {host or '(none)'!r}; "
                                              "its operator can allow it with --allowed-hosts")
    origin = headers.get(b"origin", b"").decode("latin-1").strip().rstrip("/")
    if write and origin and not same_origin(origin, headers) and origin not in policy.cors_origins and "*" not in policy.cors_origins:
        return Refusal(403, "forbidden_origin", f"writes from pages of {origin} are refused; "
                                                "its operator can allow that site with --cors-origins")
    if write and policy.read_only:
        return Refusal(403, "read_only", "this server answers searches only (--read-only)")
    if not write and (not policy.keys_for_reads or path.rstrip("/") in OPEN_PATHS or path == "/"
                      or path.startswith(DOCS_ASSETS + "/")):
        return None
    if write and not policy.keys:
        if policy.writes_open_without_key:
            return None
        return Refusal(403, "writes_disabled", "writes are refused: this server listens beyond this machine and no API key "
                                               f"is configured (--api-key-file or ${API_KEY_ENV})")
    role = role_of(policy, presented_key(headers))
    if role is None:
        return Refusal(401, "unauthorized", "this request needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                       ((b"www-authenticate", b'Bearer realm="indexer"'),))
    if write and role != "write":
        return Refusal(403, "forbidden", "this key may only search; adding and removing items needs a write key")
    return None


def same_origin(origin: str, headers: dict[bytes, bytes]) -> bool:
    """The page that sent the request was served by this server (e.g. its /docs page)."""
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    scheme_sep = origin.find("://")
    return bool(host) and scheme_sep > 0 and origin[scheme_sep + 3:].lower() == host


class AccessGuard:
    """ASGI middleware applying :func:`check_request` to every HTTP request."""

    def __init__(self, app, policy: AccessPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = check_request(self.policy, scope["method"], scope["path"], dict(scope.get("headers") or []))
        if refusal is None:
            return await self.app(scope, receive, send)
        body = json.dumps({"error": {"code": refusal.code, "message": refusal.message}}).encode()
        await send({"type": "http.response.start", "status": refusal.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"), *refusal.headers]})  # any body sent is left unread
        await send({"type": "http.response.body", "body": body})
