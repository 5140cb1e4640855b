"""`python -m core`: operator commands (knowledge sync, new-client, migrate, worker, chat, purge, erase, user)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import keyword
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from pydantic import ValidationError

from core.chat import ChatError, ChatSession, ChatTarget, local_server, run_chat
from core.config import Settings, describe_validation_error, load_settings
from core.console.cli import AccountError, add_parser as add_user_parser
from core.errors import AppError, ConfigError
from core.knowledge.base import Document, Retriever, SyncReport
from core.knowledge.documents import clients_dir, knowledge_dir, load_documents, split_passages
from core.knowledge.factory import build_retriever
from core.knowledge.settings import KnowledgeSettings
from core.sandbox import read_sandbox_secret
from core.storage.base import StoreUnavailable
from core.storage.migrate import main as run_migrations
from core.worker import run_worker

PLACEHOLDER = "__CLIENT__"
TEMPLATE = "_template"
WEBHOOK_URL = "https://<your-host>/webhook"
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# The WhatsApp id the chat writes as: a fictional +1 555 number.
CHAT_USER = "15550100001"

# What each per-client variable is for, in the order an operator sets them (see .env.example).
CLIENT_VARIABLES = {
    "PHONE_NUMBER_IDS": "phone number ids (comma separated) whose webhooks belong to this client",
    "WABA_IDS": "WhatsApp Business Account ids those numbers belong to (checked on every webhook)",
    "ACCESS_TOKEN": "system-user token for the Graph API (unset: sandbox, replies are logged, not sent)",
    "APP_SECRET": "secret of the Meta app that signs its webhooks (default META_APP_SECRET)",
    "VERIFY_TOKEN": "token of Meta's webhook handshake (default WHATSAPP_VERIFY_TOKEN)",
    "API_KEY": "bearer key for /api/v1/{name} (unset: that API answers 401)",
    "OPENAI_MODEL": "model for this client (default OPENAI_MODEL)",
    "OFFLINE_MESSAGE": "reply when no LLM is configured (default: the one in its prompts.py)",
}


class UsageError(Exception):
    """A command given something it cannot work with; exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse's own usage errors (2) and --help (0)
        return int(exit_.code or 0)
    try:
        return int(args.run(args))
    except (UsageError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Operator commands of the WhatsApp bot server.")
    commands = parser.add_subparsers(dest="command", required=True, title="commands")

    knowledge = commands.add_parser("knowledge", help="knowledge search indexes")
    knowledge_commands = knowledge.add_subparsers(dest="knowledge_command", required=True, title="commands")
    sync = knowledge_commands.add_parser("sync", help="(re)build a client's index from clients/<client>/knowledge/*.md")
    sync.add_argument("client", help="the client's folder name")
    sync.add_argument("--clients-dir", type=Path, help="folder holding the client folders (default: CLIENTS_PACKAGE's)")
    sync.set_defaults(run=knowledge_sync)

    new = commands.add_parser("new-client", help="create clients/<name> from clients/_template")
    new.add_argument("name", help="lower-case Python identifier, e.g. acme or la_tienda")
    new.add_argument("--clients-dir", type=Path, help="folder holding the client folders (default: CLIENTS_PACKAGE's)")
    new.add_argument("--package", help="Python package name of that folder (default: the folder's name)")
    new.add_argument("--template", type=Path, help="folder to copy (default: <clients-dir>/_template, else the "
                                                   "project's clients/_template)")
    new.set_defaults(run=new_client)

    migrate = commands.add_parser("migrate", help="apply supabase/migrations to DATABASE_URL (Procfile release phase)")
    migrate.set_defaults(run=lambda args: run_migrations())

    worker = commands.add_parser("worker", help="answer conversations without serving HTTP (Procfile worker)")
    worker.set_defaults(run=lambda args: asyncio.run(run_worker()) or 0)

    talk = commands.add_parser("chat", help="chat with a sandbox client's bot from this terminal (no Meta needed)")
    talk.add_argument("client", help="the client's name, e.g. demo")
    talk.add_argument("--url", help="the running server (default http://127.0.0.1:$PORT)")
    talk.add_argument("--local", action="store_true", help="run the app in this process instead of using a server")
    talk.add_argument("--secret", help="the server's sandbox secret (default SANDBOX_SECRET, else data/sandbox_secret)")
    talk.add_argument("--user", default=CHAT_USER, help=f"the WhatsApp id you write as (default {CHAT_USER})")
    talk.add_argument("--name", default="Chat", help="your profile name as the bot sees it (default Chat)")
    talk.add_argument("--verbose", "-v", action="store_true", help="also show tool calls, category, tokens, timings")
    talk.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the last answer (default 120)")
    talk.set_defaults(run=chat)

    purge_ = commands.add_parser("purge", help="run the retention job now: empty content older than each client's "
                                               "RETENTION_DAYS (the servers run it daily)")
    purge_.set_defaults(run=purge)

    erase = commands.add_parser("erase", help="erase one person's data with one client (conversations, messages, "
                                              "status reports, records, effects, archived media)")
    erase.add_argument("client", help="the client's name, e.g. demo")
    erase.add_argument("user_key", help="the person's wa_id (phone number as WhatsApp gives it) or business-scoped id")
    erase.set_defaults(run=erase_contact_command)
    add_user_parser(commands, _account_errors_are_usage_errors)
    return parser


def purge(args: argparse.Namespace) -> int:
    """Run the retention job on DATABASE_URL and the media archive, and print what it emptied per client."""
    from core.ops.maintenance import run_purge  # opens the store: only needed here

    try:
        report = asyncio.run(run_purge(load_settings()))
    except StoreUnavailable as error:
        print(f"error: the store is unavailable, nothing was purged: {error}", file=sys.stderr)
        return 1
    if not report:
        print("Nothing to purge: every client keeps its data forever (RETENTION_DAYS=0).")
    for client, (days, counts) in report.items():
        print(f"{client} (kept {days} days): {counts.messages} message(s) emptied, {counts.media_files} media "
              f"file(s) removed, {counts.status_reports} status report(s) and {counts.effects} effect(s) emptied"
              + (f"; {counts.media_failures} file(s) could not be removed (see the log)" if counts.media_failures
                 else ""))
    return 1 if any(counts.media_failures for _, counts in report.values()) else 0


def erase_contact_command(args: argparse.Namespace) -> int:
    """Erase one person's data with one client and print what was removed."""
    from core.ops.maintenance import run_erase

    if not _NAME.fullmatch(args.client):
        raise UsageError(f"{args.client!r} is not a client name (lower-case letters, digits and _)")
    try:
        erased = asyncio.run(run_erase(load_settings(), args.client, args.user_key))
    except AppError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except StoreUnavailable as error:
        print(f"error: the store is unavailable, nothing was erased: {error}", file=sys.stderr)
        return 1
    if erased is None:
        print(f"error: client {args.client} keeps nothing about {args.user_key}", file=sys.stderr)
        return 1
    print(f"Erased {args.user_key} from {args.client}: {erased.conversations} conversation(s), {erased.messages} "
          f"message(s), {erased.status_reports} status report(s), {erased.records} record(s), {erased.effects} "
          f"effect(s), {erased.media_files} media file(s).")
    return 0


def _account_errors_are_usage_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except AccountError as error:
            raise UsageError(str(error)) from error

    return run


def chat(args: argparse.Namespace) -> int:
    """Talk to a client through the real webhook path: a running server, or the app in this process (--local)."""
    if not _NAME.fullmatch(args.client):
        raise UsageError(f"{args.client!r} is not a client name (lower-case letters, digits and _)")
    # The app's own logs would interleave with the conversation: in this process they are kept to warnings.
    settings = load_settings(log_level="WARNING") if args.local else load_settings()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(local_server(settings)) if args.local else \
            (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
        secret = args.secret or (settings.sandbox_secret.get_secret_value() if settings.sandbox_secret else None) \
            or read_sandbox_secret()
        if not secret:
            raise UsageError("no sandbox secret: start the server in this folder first (it writes data/sandbox_secret), "
                             "or give the server's SANDBOX_SECRET with --secret")
        http = stack.enter_context(httpx.Client(timeout=30))
        session = ChatSession(http, ChatTarget(url, args.client, secret, args.user, args.name), sys.stdout,
                              verbose=args.verbose)
        try:
            session.connect()
            answers = "the offline responder (set OPENAI_API_KEY for a model)" if session.llm == "offline" else "the model"
            print(f"Chatting with {args.client} at {url} on its sandbox number {session.phone_number_id}; "
                  f"{answers} answers. Type a message and press Enter; Ctrl-D to leave.", file=sys.stderr, flush=True)
            run_chat(session, sys.stdin, timeout=args.timeout)
        except ChatError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def _knowledge_settings() -> KnowledgeSettings:
    try:
        return KnowledgeSettings()
    except ValidationError as error:
        raise ConfigError(f"Invalid configuration: {describe_validation_error(error)}") from error


def _clients_root(given: Path | None, settings: KnowledgeSettings) -> Path:
    if given is not None:
        if not given.is_dir():
            raise UsageError(f"no folder {given}")
        return given
    try:
        return clients_dir(settings.clients_package)
    except LookupError as error:
        raise UsageError(f"CLIENTS_PACKAGE: {error}") from error


def _client_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file() and not p.name.startswith("_"))


def knowledge_sync(args: argparse.Namespace) -> int:
    """Index the client's knowledge files with the configured backend and say what was done."""
    settings = _knowledge_settings()
    root = _clients_root(args.clients_dir, settings)
    name: str = args.client
    if name.startswith("_") or not (root / name / "__init__.py").is_file():
        known = ", ".join(_client_names(root)) or "none"
        raise UsageError(f"unknown client {name!r} (no package {root / name}); clients: {known}")
    folder = knowledge_dir(root, name)
    if not folder.is_dir():
        raise UsageError(f"client {name} has no knowledge folder: create {folder} with Markdown (*.md) files")
    documents = load_documents(folder)
    retriever = build_retriever(settings, clients_root=root)
    try:
        report = asyncio.run(_sync(retriever, name, documents))
    except Exception as error:  # the backend's own error, in one line
        print(f"error: sync of {name} with the {retriever.name} backend failed: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1
    _print_report(report, documents)
    return 0


async def _sync(retriever: Retriever, client: str, documents: list[Document]) -> SyncReport:
    try:
        return await retriever.sync(client, documents)
    finally:
        await retriever.aclose()


def _print_report(report: SyncReport, documents: list[Document]) -> None:
    print(f"Synced knowledge of {report.client} with the {report.backend} backend: "
          f"{report.passages} passage(s) from {len(report.sources)} file(s).")
    for document in documents:
        print(f"  {document.source}: {len(split_passages(document))} passage(s)")
    if report.removed:
        print(f"  {report.removed} passage(s) no longer in the files were removed from the index.")
    if not documents:
        print("  The knowledge folder has no *.md files: the index is now empty.")
    if report.backend == "lexical":
        print("The lexical index lives in each server process, built from these files when first searched: "
              "deploy or restart for changes to reach running servers.")


def validate_name(name: str, root: Path) -> None:
    """Raise UsageError unless `name` can be a new client folder under `root`."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"invalid client name {name!r}: use a lower-case Python identifier "
                         "(a-z, digits and _, starting with a letter), e.g. acme or la_tienda")
    if keyword.iskeyword(name):
        raise UsageError(f"invalid client name {name!r}: it is a Python keyword")
    if (root / name).exists():
        raise UsageError(f"client name {name!r} is taken: {root / name} exists")
    prefix = f"{name.upper()}_"
    global_names = {field.upper() for field in (*Settings.model_fields, *KnowledgeSettings.model_fields)}
    clashes = sorted(variable for variable in global_names if variable.startswith(prefix))
    if clashes:
        raise UsageError(f"invalid client name {name!r}: its variables would start with {prefix}, "
                         f"like the global {', '.join(clashes)}")


def new_client(args: argparse.Namespace) -> int:
    """Copy the template to a new client folder, fill in the name, and say what to configure."""
    root = _clients_root(args.clients_dir, _knowledge_settings())
    name: str = args.name
    validate_name(name, root)
    template = args.template or _default_template(root)
    if not (template / "__init__.py").is_file():
        raise UsageError(f"no client template at {template}")
    package = args.package or root.name
    target = root / name
    shutil.copytree(template, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in sorted(target.rglob("*"), reverse=True):  # deepest first, so renaming keeps parents valid
        if path.is_file():
            _fill_in(path, package, name)
        if PLACEHOLDER in path.name:
            path.rename(path.with_name(path.name.replace(PLACEHOLDER, name)))
    _print_next_steps(name, target, template)
    return 0


def _default_template(root: Path) -> Path:
    own = root / TEMPLATE
    return own if own.is_dir() else clients_dir("clients") / TEMPLATE


def _fill_in(path: Path, package: str, name: str) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return  # not text: copied as is
    # The template imports itself as `clients.__CLIENT__`; another clients package needs its own name there.
    filled = text.replace(f"clients.{PLACEHOLDER}", f"{package}.{name}").replace(PLACEHOLDER, name)
    if filled != text:
        path.write_text(filled, encoding="utf-8")


def _print_next_steps(name: str, target: Path, template: Path) -> None:
    from core.clients import ClientSettings  # imports FastAPI: only needed here

    prefix = f"{name.upper()}_"
    variables = [field.upper() for field in ClientSettings.model_fields]
    ordered = [v for v in CLIENT_VARIABLES if v in variables] + [v for v in variables if v not in CLIENT_VARIABLES]
    width = max(len(prefix + v) for v in ordered)
    print(f"Created client {name} in {target} (copied from {template}).")
    print()
    print("Next steps:")
    print(f"  1. Write what the bot is told in {target / 'prompts.py'}; add tools (typed functions) if it needs them.")
    print(f"  2. Optional knowledge: Markdown files in {target / 'knowledge'}, then "
          f"`python -m core knowledge sync {name}`.")
    print("  3. Set these environment variables (.env, or Heroku config vars), then restart:")
    for variable in ordered:
        meaning = CLIENT_VARIABLES.get(variable, "").format(name=name)
        print(f"       {(prefix + variable).ljust(width)}  {meaning}".rstrip())
    print(f"  4. In the Meta app's WhatsApp configuration, set the callback URL to {WEBHOOK_URL}")
    print("     with the verify token, and subscribe to the `messages` field.")
