"""`python -m core user add|list|remove`: console accounts, made and removed from the operator's terminal."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO, TypeVar

from core.clock import SystemClock
from core.config import Settings, load_settings
from core.console.passwords import MIN_PASSWORD_LENGTH, generated_password, hash_password
from core.knowledge.documents import clients_dir
from core.storage.accounts import CONSOLE_ROLES
from core.storage.base import Store

T = TypeVar("T")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class AccountError(Exception):
    """What was asked cannot be done (bad email, role without client, taken email…); exit code 2."""


def add_parser(commands: argparse._SubParsersAction, run: Callable[[Callable[[argparse.Namespace], int]],
                                                                    Callable[[argparse.Namespace], int]]) -> None:
    """The `user` command and its subcommands; `run` wraps each so that AccountError becomes a usage error."""
    user = commands.add_parser("user", help="accounts of the web console (/console)")
    user_commands = user.add_subparsers(dest="user_command", required=True, title="commands")
    add = user_commands.add_parser("add", help="create an account; its password is read from stdin "
                                               "(--password-stdin) or generated and printed once")
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=CONSOLE_ROLES,
                     help="admin: every client; operator: answers one client's conversations; viewer: reads them")
    add.add_argument("--client", help="the one client an operator or viewer sees (not for admins)")
    add.add_argument("--password-stdin", action="store_true",
                     help=f"read the password from the first line of stdin (at least {MIN_PASSWORD_LENGTH} characters)")
    add.set_defaults(run=run(add_user))
    listing = user_commands.add_parser("list", help="every account: email, role, client")
    listing.set_defaults(run=run(list_users))
    remove = user_commands.add_parser("remove", help="delete an account (its open sessions end at their next request)")
    remove.add_argument("email")
    remove.set_defaults(run=run(remove_user))


def add_user(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    settings = load_settings()
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    email = args.email.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise AccountError(f"{args.email!r} is not an email address")
    client = _checked_client(args.role, args.client, settings)
    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"the password read from stdin has {len(password)} characters; "
                               f"use at least {MIN_PASSWORD_LENGTH}")
        shown = None
    else:
        password = shown = generated_password()
    added = _with_store(settings, lambda store: store.add_console_user(
        email, hash_password(password), args.role, client, SystemClock().now()))
    if added is None:
        raise AccountError(f"{email} already has an account (`python -m core user remove {email}` first)")
    scope = "every client" if client is None else f"client {client}"
    print(f"Created {args.role} {email} for {scope}.", file=stdout)
    if shown is not None:
        # Printed this once: only its hash is kept.
        print(f"Password: {shown}", file=stdout)
    print(f"Log in at http://127.0.0.1:{settings.port}/console (or this deployment's own address).", file=stdout)
    return 0


def list_users(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    users = _with_store(load_settings(), lambda store: store.list_console_users())
    if not users:
        print("No console accounts: `python -m core user add <email> --role admin` creates one.", file=stdout)
    for user in users:
        state = "  disabled" if user.disabled else ""
        print(f"{user.email}\t{user.role}\t{user.client or '*'}\t{user.created_at:%Y-%m-%d}{state}", file=stdout)
    return 0


def remove_user(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    email = args.email.strip().lower()
    if not _with_store(load_settings(), lambda store: store.remove_console_user(email)):
        raise AccountError(f"no account {email}")
    print(f"Removed {email}.", file=stdout or sys.stdout)
    return 0


def _checked_client(role: str, client: str | None, settings: Settings) -> str | None:
    if role == "admin":
        if client:
            raise AccountError("an admin sees every client: leave --client out")
        return None
    if not client:
        raise AccountError(f"a{'n' if role == 'operator' else ''} {role} sees one client: give --client <name>")
    root = clients_dir(settings.clients_package)
    known = sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file() and not p.name.startswith("_"))
    if client not in known:
        raise AccountError(f"no client {client!r}; clients: {', '.join(known) or 'none'}")
    return client


def _with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    from core.services import open_store  # the store's drivers: only needed here

    async def run() -> T:
        store = open_store(settings)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())
