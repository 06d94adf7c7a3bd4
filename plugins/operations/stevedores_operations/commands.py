"""CLI commands: ``stevedores users create|token|password|deactivate``, ``stevedores demo-data``,
``stevedores db upgrade|current``."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

import click


@contextmanager
def _accounts_engine() -> Iterator[Any]:
    """The engine for an account command: an AccountError is reported and exits 1; the pool is closed."""
    from .accounts import AccountError

    _runtime, engine = _engine()
    try:
        yield engine
    except AccountError as exc:
        click.echo(f"stevedores: {exc}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()


def _engine() -> tuple[Any, Any]:
    """(runtime, engine) from the environment's settings, schema migrated (or checked) first."""
    from stevedores import ConfigError, Runtime

    from .migrate import current_revision, head_revision, upgrade

    try:
        runtime = Runtime.load()
    except ConfigError as exc:
        click.echo(f"stevedores: {exc}", err=True)
        sys.exit(2)
    engine = runtime.engine
    if runtime.config["OPERATIONS_AUTO_MIGRATE"]:
        upgrade(engine)
    elif current_revision(engine) != head_revision():
        click.echo("stevedores: the operations schema is not up to date: run 'stevedores db upgrade'", err=True)
        sys.exit(1)
    return runtime, engine


def _read_password(from_stdin: bool) -> str:
    """The first line of stdin, or a hidden prompt asked twice; exits 2 when there is no terminal to ask on."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():  # click.prompt would read EOF and print only "Aborted!"
        click.echo("stevedores: no terminal to ask for the password on: pipe it in with --password-stdin, "
                   "e.g. printf '%s\\n' \"$PASSWORD\" | stevedores users create NAME --role clerk "
                   "--password-stdin", err=True)
        sys.exit(2)
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def register(cli: click.Group) -> None:
    """Add the plugin's commands to the ``stevedores`` group."""

    @cli.group("users")
    def users() -> None:
        """Operations accounts (roles: clerk posts tallies; manager also manages vessel calls)."""

    _add_user_commands(users)
    _add_demo_data(cli)
    _add_db_commands(cli)


def _add_user_commands(users: click.Group) -> None:
    """``stevedores users create|token|password|deactivate``."""

    @users.command("create")
    @click.argument("username")
    @click.option("--role", type=click.Choice(["clerk", "manager"]), required=True)
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    @click.option("--token", "with_token", is_flag=True, help="Also issue an API token (printed once).")
    def users_create(username: str, role: str, password_stdin: bool, with_token: bool) -> None:
        """Create an account; the password is prompted for (twice) unless --password-stdin."""
        from .accounts import create_user, issue_token

        password = _read_password(password_stdin)
        with _accounts_engine() as engine:
            create_user(engine, username, password, role)
            click.echo(f"created {role} {username.strip().lower()}")
            if with_token:
                click.echo(f"API token (shown once): {issue_token(engine, username, 'created with account')}")

    @users.command("token")
    @click.argument("username")
    @click.option("--label", default="", help="What the token is for (e.g. the device).")
    def users_token(username: str, label: str) -> None:
        """Issue a new API bearer token for an account (only its hash is stored)."""
        from .accounts import issue_token

        with _accounts_engine() as engine:
            click.echo(issue_token(engine, username, label))

    @users.command("password")
    @click.argument("username")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    def users_password(username: str, password_stdin: bool) -> None:
        """Set a new password (prompted for twice unless --password-stdin); ends the account's sessions."""
        from .accounts import change_password

        password = _read_password(password_stdin)
        with _accounts_engine() as engine:
            change_password(engine, username, password)
            click.echo(f"password changed for {username.strip().lower()}; its sessions have ended")

    @users.command("deactivate")
    @click.argument("username")
    def users_deactivate(username: str) -> None:
        """Lock an account out (its sessions and API tokens stop working at once)."""
        from .accounts import deactivate_user

        with _accounts_engine() as engine:
            deactivate_user(engine, username)
            click.echo(f"deactivated {username.strip().lower()}")


def _add_demo_data(cli: click.Group) -> None:
    """``stevedores demo-data``."""

    @cli.command("demo-data")
    @click.option("--force", is_flag=True, help="Add the sample even if vessel calls exist.")
    def demo_data(force: bool) -> None:
        """Load a sample: vessel calls in every state and about a day of tallies."""
        from .demo import load_demo_once

        _runtime, engine = _engine()
        try:
            loaded = load_demo_once(engine, force)  # once, even from several instances at once
            if loaded is None:
                click.echo("vessel calls exist already; nothing loaded (use --force to add the sample anyway)")
                return
            click.echo(f"loaded {loaded[0]} vessel calls and {loaded[1]} tallies")
        finally:
            engine.dispose()


def _add_db_commands(cli: click.Group) -> None:
    """``stevedores db upgrade|current`` for the operations schema (beside the core's, if it has a ``db`` group)."""
    db = cli.commands.get("db")
    if not isinstance(db, click.Group):
        @cli.group("db")
        def db() -> None:
            """Database schema migrations."""

    upgrade_name = "upgrade" if "upgrade" not in db.commands else "upgrade-operations"

    @db.command(upgrade_name)
    def db_upgrade() -> None:
        """Upgrade the operations schema to the newest revision (data is kept)."""
        from stevedores import ConfigError, Runtime

        from .migrate import upgrade

        try:
            runtime = Runtime.load()
        except ConfigError as exc:
            click.echo(f"stevedores: {exc}", err=True)
            sys.exit(2)
        before, after = upgrade(runtime.engine)
        click.echo(f"operations schema: {before or 'empty'} -> {after}" if before != after
                   else f"operations schema: already at {after}")
        runtime.engine.dispose()

    @db.command("current" if "current" not in db.commands else "current-operations")
    def db_current() -> None:
        """Show the operations schema revision and the newest one this code knows."""
        from stevedores import Runtime

        from .migrate import current_revision, head_revision

        runtime = Runtime.load()
        click.echo(f"operations schema: {current_revision(runtime.engine) or 'empty'} (newest: {head_revision()})")
        runtime.engine.dispose()
