"""`runner web` (the dashboard, API and metrics) and `runner token create|list|revoke`."""

from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli_common import echo, engine_option, settings_of
from runner.job.output import table
from runner.vocab import EngineChoice, Role
from runner.web.limits import DEFAULT_MAX_BODY

if TYPE_CHECKING:  # the store loads when a command opens it, not for --help
    from runner.store.tokens import TokenStore

log = logging.getLogger("runner.web")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; put TLS in front of any "
                   "other).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"),
              show_default=True, help="Directory of job files (run by name; schedules).")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), default=Path("inventory"),
              show_default=True, help="Inventory of the runs started from the web.")
@click.option("--templates", type=click.Path(path_type=Path), default=Path("templates"),
              show_default=True)
@click.option("--store", "store_url", metavar="URL",
              help="Schedule state database (default: the results database).")
@click.option("--backups", "backup_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A backup repository to show besides the jobs' backup dirs (repeatable).")
@engine_option
@click.option("--max-runs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Runs started from the web going at once.")
@click.option("--metrics-public", is_flag=True,
              help="Serve /metrics without a token (for a Prometheus on a trusted network).")
@click.option("--max-body", type=click.IntRange(1024, 64 * 1024 * 1024),
              default=DEFAULT_MAX_BODY, show_default=True, metavar="BYTES",
              help="Largest request body accepted; larger ones are answered 413 unread.")
@click.option("--secure-cookies", is_flag=True,
              help="Mark the session cookie Secure: browsers send it over HTTPS only (use "
                   "it behind a TLS proxy).")
@click.pass_context
def web(ctx: click.Context, host: str, port: int, jobs_dir: Path, inventory: Path,
        templates: Path, store_url: str | None, backup_dirs: tuple[Path, ...],
        engine: EngineChoice, max_runs: int, metrics_public: bool, max_body: int,
        secure_cookies: bool) -> None:
    """Serve the dashboard, the REST API (/api/, docs at /docs) and /metrics."""
    import uvicorn

    from runner.web.app import create_app
    from runner.web.config import WebConfig

    settings = settings_of(ctx)
    config = WebConfig(settings, jobs_dir, inventory, templates, store_url, backup_dirs,
                       engine, max_runs, metrics_public, max_body=max_body,
                       secure_cookies=secure_cookies)
    app = create_app(config)
    if not _loopback(host) and not secure_cookies:
        echo(f"warning: listening on {host}: tokens and session cookies cross the "
             "network in clear unless a TLS proxy is in front (then add "
             "--secure-cookies)", err=True)
    echo(f"runner web on http://{host}:{port}/ (API docs: /docs; metrics: /metrics"
         f"{', public' if metrics_public else ', token required'})", err=True)
    logging.getLogger("runner").setLevel(logging.INFO)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                server_header=False, proxy_headers=False)


@click.group()
def token() -> None:
    """API and dashboard tokens: create (shown once), list, revoke."""


def _tokens(ctx: click.Context) -> TokenStore:
    from runner.store.results import ResultsStore
    from runner.store.tokens import TokenStore

    return TokenStore(ResultsStore(settings_of(ctx).database_url()).engine)


@token.command()
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True,
              help="viewer: read; operator: also run, cancel, approve, reject; admin: also "
                   "run a change that needs approval without one (recorded).")
@click.option("--name", help="What it is for (default: token-<id>); unique.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def create(ctx: click.Context, role: str, name: str | None, as_json: bool) -> None:
    """Create a token and print it once: only its hash is kept."""
    store = _tokens(ctx)
    record, secret = store.create(Role(role), name)
    if as_json:
        echo(json.dumps({**record.to_json(), "token": secret}, indent=2))
        return
    echo(secret)
    echo(f"token {record.name} ({record.role}, id {record.id}): shown this once; "
         "keep it in a secret store", err=True)


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Every token (never the token itself): id, name, role, created, last used, revoked."""
    store = _tokens(ctx)
    tokens = store.list()
    if as_json:
        echo(json.dumps([t.to_json() for t in tokens], indent=2))
        return
    if not tokens:
        echo("no tokens (runner token create --role viewer|operator|admin)")
        return
    rows = [("ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED")]
    rows += [(t.id, t.name, t.role, t.created[:19], (t.last_used or "never")[:19],
              (t.revoked or "")[:19]) for t in tokens]
    echo(table(rows))


@token.command()
@click.argument("id_or_name")
@click.pass_context
def revoke(ctx: click.Context, id_or_name: str) -> None:
    """Revoke a token (by id or name): its API calls and sessions stop at once."""
    store = _tokens(ctx)
    done = store.revoke(id_or_name)
    echo(f"revoked {done.name} ({done.id})")
