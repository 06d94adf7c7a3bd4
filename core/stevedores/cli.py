"""The ``stevedores`` command: serve, plugins, config, workers, check (plus plugins' commands)."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import click

from .database import probe_database, read_only_engine
from .plugins import PluginError, Plugins
from .runtime import Runtime, declared_settings
from .settings import ConfigError, as_text


def _fail(exc: Exception, code: int = 2) -> None:
    click.echo(f"stevedores: {exc}", err=True)
    sys.exit(code)


def _runtime() -> Runtime:
    try:
        return Runtime.load()
    except (ConfigError, PluginError) as exc:
        _fail(exc)
        raise  # unreachable


def _app(*, dry_run: bool = False) -> Any:
    """The app; ``dry_run``: every start-up hook runs, on an in-memory database, with no log file."""
    from .app import create_app

    try:
        return create_app(runtime=Runtime.load(dry_run=dry_run))
    except (ConfigError, PluginError) as exc:
        _fail(exc)


@click.group()
@click.version_option(package_name="stevedores-dashboard")
def cli() -> None:
    """Stevedores Dashboard: run and inspect the dashboard and its plugins."""


@cli.command()
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.option("--port", type=int, default=None, help="Port (default: PORT, else 8000).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Host for --dev (gunicorn binds 127.0.0.1 in development, else 0.0.0.0).")
def serve(dev: bool, port: int | None, host: str) -> None:
    """Start the dashboard: gunicorn with the bundled configuration, or --dev."""
    if port is not None:
        os.environ["PORT"] = str(port)
    if not dev:
        args = [sys.executable, "-m", "gunicorn", "-c", "python:stevedores.gunicorn_conf",
                "stevedores.wsgi:application"]
        os.execv(sys.executable, args)
    app = _app()
    runtime: Runtime = app.extensions["stevedores"]
    runtime.config.warn_if_secret_key_ephemeral()
    runtime.worker_started(app, None)
    # SIGTERM (what process managers and the tests send) stops as cleanly as Ctrl-C: shells start
    # background jobs with SIGINT ignored, so SIGINT alone cannot be relied on to stop a server.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    try:
        app.run(host=host, port=runtime.config["PORT"], debug=False, use_reloader=False, threaded=True)
    finally:
        runtime.shutdown(app)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List plugins: name, version, distribution, status (active/disabled/failed), hooks.

    Read-only: the app is built as a dry run (see ``Runtime.load``), so that a plugin failing
    in its start-up hooks is listed as failed, and nothing is written.
    """
    from .app import create_app

    try:
        app = create_app(runtime=Runtime.load(dry_run=True))
        listing = app.extensions["stevedores"].plugins.listing()
        app.extensions["stevedores"].shutdown(app)
    except ConfigError as exc:
        click.echo(f"stevedores: settings are invalid, showing plugins as loaded:\n{exc}", err=True)
        listing = Plugins.from_environ(os.environ).listing()
    except PluginError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in listing], indent=2))
        return
    for p in listing:
        click.echo(f"{p.name:<20} {p.version or '-':<10} {p.status:<9} {p.distribution or '-'}")
        if p.error:
            click.echo(f"{'':<20} error: {p.error}")
        click.echo(f"{'':<20} hooks: {', '.join(p.hooks) or '-'}")


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_command(as_json: bool) -> None:
    """Show the effective settings (secrets redacted) and where each value came from."""
    rows = _runtime().config.rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<34} {row['value']:<40} {row['source']:<11} {row['plugin']}")


@cli.command("settings")
@click.option("--markdown", is_flag=True, help="A Markdown table (as in the README).")
def settings_command(markdown: bool) -> None:
    """Every declared setting: variable, plugin, expected form, default, secret, help."""
    plugins = Plugins.from_environ(os.environ)
    if markdown:
        click.echo(settings_table(plugins))
        return
    for plugin, setting in declared_settings(plugins):
        click.echo(f"{setting.name:<34} {plugin:<18} {setting.expected}")


def settings_table(plugins: Plugins) -> str:
    """The settings table of the README, generated from the declarations."""
    rows = ["| Variable | Plugin | Expected | Default | Secret | Meaning |", "|---|---|---|---|---|---|"]
    for plugin, s in declared_settings(plugins):
        default = as_text(s.default)
        rows.append(f"| `{s.name}` | {plugin} | {s.expected} | {('`' + default + '`') if default else ''} | "
                    f"{'yes' if s.secret else ''} | {s.help} |")
    return "\n".join(rows)


@cli.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def workers_command(as_json: bool) -> None:
    """Show the worker-sizing decision: every figure and which one decided."""
    decision = _runtime().worker_decision()
    if as_json:
        click.echo(json.dumps(decision.as_dict(), indent=2))
        return
    for line in decision.lines():
        click.echo(line)
    for plugin, proposal in decision.proposals:
        click.echo(f"  {plugin}: at most {proposal.limit} ({proposal.reason})")


@cli.command("check")
def check_command() -> None:
    """Pre-flight for deploy pipelines: settings, plugins, database, and what the plugins report about
    the configured database (e.g. the operations schema behind this code). Read-only.

    Exits 2 on invalid settings (or any plugin failure with STEVEDORES_STRICT_PLUGINS=1),
    1 when the database is unreachable; a failed plugin otherwise is a warning (the
    dashboard runs without it) and the exit status stays 0.
    """
    app = _app(dry_run=True)
    runtime: Runtime = app.extensions["stevedores"]
    runtime.shutdown(app)
    click.echo(f"settings: ok ({len(runtime.config)} declared, profile {runtime.config.profile})")
    for info in runtime.plugins.listing():
        if info.status == "failed":
            click.echo(f"warning: plugin {info.name} ({info.distribution or 'no distribution'}) failed and the "
                       f"dashboard runs without it: {info.error}", err=True)
    click.echo(f"plugins: {', '.join(runtime.plugins.active()) or 'none active'}")
    try:
        click.echo(f"database: ok ({probe_database(runtime.config.original['DATABASE_URL'])})")
    except Exception as exc:  # noqa: BLE001 - reported, never a traceback
        click.echo(f"problem: database: unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                   err=True)
        sys.exit(1)
    problems = _preflight_problems(runtime)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo("check passed")


def _preflight_problems(runtime: Runtime) -> list[str]:
    """``plugin: problem`` for what each plugin's ``stevedores_preflight`` finds in the configured database."""
    failed_before = {p.name for p in runtime.plugins.listing() if p.status == "failed"}
    engine = read_only_engine(runtime.config.original["DATABASE_URL"])
    try:
        found = runtime.plugins.call("stevedores_preflight", config=runtime.config, engine=engine)
    finally:
        engine.dispose()
    problems = [f"{plugin}: {problem}" for plugin, answer in found for problem in answer or ()]
    problems += [f"{p.name}: pre-flight failed: {p.error}" for p in runtime.plugins.listing()
                 if p.status == "failed" and p.name not in failed_before]
    return problems


def main() -> None:
    """Entry point of the ``stevedores`` console script."""
    try:
        plugins = Plugins.from_environ(os.environ)
        plugins.call("stevedores_register_commands", cli=cli)
    except PluginError as exc:
        _fail(exc)
    cli()
