"""`sharedml coordinator user ...` and `sharedml node user ...`: the board's accounts of a service, kept in the
accounts file its config's `board:` section names (run on the service's machine, by its operator).

The password is read from the terminal without echo, or from standard input with `--password-stdin` (for
scripts); it never appears on a command line, where other users of the machine could read it.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import fail
from ..jobs.yaml_errors import ConfigError, ConfigFile, load_config
from .auth import ROLES

console = Console()


ConfigPath = Annotated[Path, typer.Option("--config", help="the service's config file (node.yaml, coordinator.yaml)")]


def user_app(service: str, parties: bool) -> typer.Typer:
    """The `user` command group of the coordinator or a node (`service`), whose config has a `board:` section;
    `parties`: whether an account names the party whose results it sees (the coordinator's) or is the node's
    own (a node's)."""
    app = typer.Typer(help=f"People who may log in to the {service}'s board.", no_args_is_help=True)

    def accounts_file(config: Path) -> Path:
        from ..deploy.config import CoordinatorConfig, NodeConfig  # the HTTP stack: loaded only when used

        config_model: type[ConfigFile] = CoordinatorConfig if service == "coordinator" else NodeConfig
        try:
            loaded = load_config(config, config_model)
        except (ConfigError, OSError) as err:
            fail(str(err))
        if getattr(loaded, "board", None) is None:
            fail(f"{config} has no `board:` section: add `board: {{}}` to serve the board and keep its accounts")
        return loaded.path(loaded.board.accounts)

    @app.command("add")
    def add(name: Annotated[str, typer.Argument(help="the login name")],
            config: ConfigPath,
            role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")] = "viewer",
            party: Annotated[str | None, typer.Option(help="the party whose results this person sees")] = None,
            password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                         help="read the password from standard input")] = False,
            ) -> None:
        """Add a person, or replace their password, role and party."""
        from .accounts import add_user

        if role not in ROLES:
            fail(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if party is not None and not parties:
            fail(f"a {service}'s accounts are its own people: leave out --party")
        path = accounts_file(config)
        password = sys.stdin.readline().rstrip("\n") if password_stdin else _ask()
        try:
            add_user(path, name, password, role, party)  # type: ignore[arg-type]
        except ConfigError as err:
            fail(str(err))
        console.print(f"{name} may log in as {role}{f' of {party}' if party else ''} ({path})", highlight=False)

    @app.command("list")
    def list_users(config: ConfigPath) -> None:
        """Everyone who may log in, with role and party (never the hashes)."""
        from .accounts import AccountsFile

        path = accounts_file(config)
        users = load_config(path, AccountsFile).users if path.exists() else {}
        table = Table("name", "role", *(("party",) if parties else ()))
        for name, account in sorted(users.items()):
            table.add_row(name, account.role, *((account.party or "",) if parties else ()))
        console.print(table)

    @app.command("remove")
    def remove(name: Annotated[str, typer.Argument(help="the login name")], config: ConfigPath) -> None:
        """Remove a person: their open sessions end at their next request."""
        from .accounts import remove_user

        path = accounts_file(config)
        if not remove_user(path, name):
            fail(f"no account {name!r} in {path}")
        console.print(f"{name} removed", highlight=False)

    return app


def _ask() -> str:
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        fail("the two passwords differ")
    return first
