"""Accounts: argon2 password hashes, API bearer tokens (only their hash is stored), roles, session epochs.

Roles: ``clerk`` may post tallies; ``manager`` may also create and change vessel calls.
A browser session holds the account's ``session_epoch`` from login time and is valid only while
it is still the account's epoch: logout, deactivation and a password change bump it, which ends
every session of the account on the server side, however the cookie was kept or copied.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .domain import utcnow
from .passwords import MAX_PASSWORD_LENGTH, encodable, password_problem
from .store import Clerk
from .tables import api_tokens, users
from .validation import MAX_ID

ROLES = ("clerk", "manager")
#: What each role may do.
PERMISSIONS = {"clerk": {"tally"}, "manager": {"tally", "manage"}}
_USERNAME = re.compile(r"\A[a-z0-9][a-z0-9._-]{1,63}\Z")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both failures take the same time."""
    return _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A refused account operation, with a message naming what is wrong."""


def account_name(text: str) -> str | None:
    """``text`` as the username it would log in as (stripped, lowercased), or None if no account can have it."""
    username = text.strip().lower()
    return username if _USERNAME.match(username) else None


def may(role: str | None, action: str) -> bool:
    """Whether ``role`` may perform ``action`` (``tally`` or ``manage``)."""
    return action in PERMISSIONS.get(role or "", set())


def create_user(engine: Engine, username: str, password: str, role: str) -> int:
    """Create an account; AccountError names the bad value (username, password, role)."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise AccountError("username: use 2-64 lowercase letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise AccountError(f"role: expected one of {', '.join(ROLES)}")
    problem = password_problem(password, username)
    if problem is not None:
        raise AccountError(f"password: {problem}")
    try:
        with engine.begin() as conn:
            return conn.execute(insert(users).values(username=username, password_hash=_hasher.hash(password),
                                                     role=role, active=True, created_at=utcnow())
                                .returning(users.c.id)).scalar_one()
    except IntegrityError:
        raise AccountError(f"username: {username!r} already exists") from None


def authenticate(engine: Engine, username: str, password: str) -> Clerk | None:
    """The account if the password matches an active user, else None (constant work either way).

    A username that no account can have (NUL, a lone surrogate, 5000 characters) is not looked up
    but refused like any unknown name, after the same hashing work.
    """
    username = account_name(username) or ""
    row = None
    if username:
        with engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
    if len(password) > MAX_PASSWORD_LENGTH or not encodable(password):
        password, row = "", None
    try:
        _hasher.verify(row["password_hash"] if row else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row["active"]:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        with engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == row["id"]).values(password_hash=_hasher.hash(password)))
    return Clerk(row["id"], row["username"], row["role"], row["session_epoch"])


def session_account(engine: Engine, user_id: Any, epoch: Any) -> Clerk | None:
    """The active account of a browser session (user id and the epoch it was issued under), or None.

    None when the account is gone or inactive, or when its epoch has moved on (logout, deactivation,
    a new password since the session began). One indexed lookup.
    """
    if not isinstance(user_id, int) or not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    if not 1 <= user_id <= MAX_ID:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(users.c.id, users.c.username, users.c.role, users.c.session_epoch)
                           .where(users.c.id == user_id, users.c.active.is_(True),
                                  users.c.session_epoch == epoch)).first()
    return Clerk(row[0], row[1], row[2], row[3]) if row else None


def end_sessions(engine: Engine, user_id: int) -> None:
    """End every browser session of the account (logout: the cookie, however copied, stops working)."""
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(session_epoch=users.c.session_epoch + 1))


def deactivate_user(engine: Engine, username: str) -> None:
    """Lock an account out: its sessions and API tokens stop working at once."""
    with engine.begin() as conn:
        done = conn.execute(update(users).where(users.c.username == username.strip().lower())
                            .values(active=False, session_epoch=users.c.session_epoch + 1))
    if not done.rowcount:
        raise AccountError(f"username: no account named {username!r}")


def change_password(engine: Engine, username: str, password: str) -> None:
    """Set a new password (the policy of passwords.py applies) and end the account's sessions.

    AccountError names the field (``username`` unknown, ``password`` refused by the rule).
    API tokens are separate credentials and keep working (``deactivate`` stops them).
    """
    username = username.strip().lower()
    problem = password_problem(password, username)
    if problem is not None:
        raise AccountError(f"password: {problem}")
    with engine.begin() as conn:
        done = conn.execute(update(users).where(users.c.username == username)
                            .values(password_hash=_hasher.hash(password), session_epoch=users.c.session_epoch + 1))
    if not done.rowcount:
        raise AccountError(f"username: no account named {username!r}")


def hash_token(token: str) -> str:
    """SHA-256 of a token: tokens are 256 random bits, so a fast hash cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(engine: Engine, username: str, label: str = "") -> str:
    """A new API token for ``username``; returned once, only its hash is stored."""
    with engine.begin() as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.username == username.strip().lower())).scalar()
        if user_id is None:
            raise AccountError(f"username: no account named {username!r}")
        token = "sdo_" + secrets.token_urlsafe(32)
        conn.execute(insert(api_tokens).values(user_id=user_id, token_hash=hash_token(token), label=label[:64],
                                               created_at=utcnow()))
    return token


def user_for_token(engine: Engine, token: str) -> Clerk | None:
    """The active account owning this bearer token, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(users.c.id, users.c.username, users.c.role)
                           .join(api_tokens, api_tokens.c.user_id == users.c.id)
                           .where(api_tokens.c.token_hash == hash_token(token), users.c.active.is_(True))).first()
    return Clerk(row[0], row[1], row[2]) if row else None
