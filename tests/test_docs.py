"""The documentation and the code keep each other honest.

Fails when a `flame` option or a setting is missing from docs/operations.md,
when an API endpoint is missing from docs/protocol.md (or a page names one
that does not exist), when an error code is missing from the protocol's
table, when a module or function named in the docs is gone, or when the test
vectors in docs/protocol.md no longer come out of the code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from fastapi import FastAPI

import flamechat
from flamechat.cli import main
from flamechat.config import DirectorySettings, NodeSettings
from flamechat.crypto import NodeKey, b64encode, canonical_json, sign_document, sign_request
from flamechat.directory.app import create_directory_app
from flamechat.httpapi.errors import _HTTP_CODES
from flamechat.node import create_node_app
from flamechat.protocol import errors
from flamechat.services.messaging import receipt_id

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = ("protocol.md", "architecture.md", "threat-model.md", "operations.md")
API_PREFIXES = ("/federation/v1/", "/directory/v1/", "/api/v1/")
METHODS = ("get", "put", "post", "delete", "patch")
# "PUT /federation/v1/envelopes/{envelope_id}" anywhere in a page.
ENDPOINT = re.compile(
    r"\b(GET|PUT|POST|DELETE|PATCH) (/(?:federation|directory|api)/v\d+/[A-Za-z0-9_{}./%-]*)"
)
# `services/messaging.py` or `services/messaging.py::MessagingService.receive`
MODULE_REF = re.compile(
    r"`((?:crypto|protocol|services|web|federation|directory|httpapi|storage)/[\w/]+\.py)(?:::([\w.]+))?`"
)


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# --- the command line and the settings -------------------------------------------------


def commands(
    group: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, group
    if isinstance(group, click.Group):
        for name, command in group.commands.items():
            yield from commands(command, (*path, name))


def envvar(path: tuple[str, ...], option: click.Option) -> str:
    """The variable click reads with ``auto_envvar_prefix="FLAME"``."""
    assert option.name is not None
    return "_".join(("FLAME", *path, option.name)).upper().replace("-", "_")


def every_option() -> list[tuple[str, click.Option, tuple[str, ...]]]:
    found = []
    for path, command in commands(main):
        for param in command.params:
            if isinstance(param, click.Option):
                found.append((" ".join(("flame", *path)), param, path))
    return found


def test_the_command_tree_is_walked() -> None:
    # Guards the walk itself: a test that finds no option would pass vacuously.
    names = {name for name, _option, _path in every_option()}
    assert {"flame", "flame directory", "flame node", "flame user create", "flame node-admin blocks"} <= names


@pytest.mark.parametrize(
    ("command", "option", "path"),
    [pytest.param(*entry, id=f"{entry[0]} {entry[1].opts[0]}") for entry in every_option()],
)
def test_every_option_is_documented(command: str, option: click.Option, path: tuple[str, ...]) -> None:
    text = page("operations.md")
    for flag in (*option.opts, *option.secondary_opts):
        assert f"`{flag}`" in text, f"{command} {flag} is missing from docs/operations.md"
    variable = envvar(path, option)
    assert variable in text, f"{command} {option.opts[0]}: {variable} is missing from docs/operations.md"


@pytest.mark.parametrize("settings", [NodeSettings, DirectorySettings])
def test_every_setting_is_documented(settings: type[Any]) -> None:
    text = page("operations.md")
    missing = [f.name for f in dataclasses.fields(settings) if f"`{f.name}`" not in text]
    assert not missing, f"{settings.__name__} fields missing from docs/operations.md: {missing}"


def test_every_setting_is_an_option_of_its_command() -> None:
    # The docs promise that each setting is a flag of `flame node` / `flame directory`.
    for settings, name in ((NodeSettings, "node"), (DirectorySettings, "directory")):
        options = {p.name for p in main.commands[name].params}
        missing = [f.name for f in dataclasses.fields(settings) if f.name not in options]
        assert not missing, f"{settings.__name__} fields without a `flame {name}` option: {missing}"


# --- endpoints ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi_paths(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    """(METHOD, path template) of every endpoint the node and the directory publish."""
    root = tmp_path_factory.mktemp("docs-apps")
    apps: list[FastAPI] = [
        create_node_app(NodeSettings(data_dir=root / "node", password_profile="minimal")),
        create_directory_app(DirectorySettings(data_dir=root / "directory", password_profile="minimal")),
    ]
    found = set()
    for app in apps:
        for path, operations in app.openapi()["paths"].items():
            for method in operations:
                if method in METHODS and path.startswith(API_PREFIXES):
                    found.add((method.upper(), path))
    return found


def documented(text: str) -> set[tuple[str, str]]:
    return {(method, path.rstrip(".")) for method, path in ENDPOINT.findall(text)}


def as_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)) + "$")


def test_the_apps_publish_the_three_apis(openapi_paths: set[tuple[str, str]]) -> None:
    prefixes = {path.split("/")[1] for _method, path in openapi_paths}
    assert prefixes == {"federation", "directory", "api"}
    assert ("PUT", "/federation/v1/envelopes/{envelope_id}") in openapi_paths


def test_every_endpoint_is_in_the_protocol(openapi_paths: set[tuple[str, str]]) -> None:
    listed = documented(page("protocol.md"))
    missing = sorted(f"{m} {p}" for m, p in openapi_paths - listed)
    assert not missing, f"endpoints missing from docs/protocol.md: {missing}"


@pytest.mark.parametrize("name", [*PAGES, "../README.md"])
def test_the_docs_name_no_endpoint_that_does_not_exist(
    name: str, openapi_paths: set[tuple[str, str]]
) -> None:
    patterns = [(method, as_pattern(path)) for method, path in openapi_paths]
    unknown = sorted(
        f"{method} {path}"
        for method, path in documented(page(name))
        if not any(m == method and pattern.match(path) for m, pattern in patterns)
    )
    assert not unknown, f"docs/{name} names endpoints the apps do not have: {unknown}"


def test_the_endpoint_pattern_reads_the_protocol() -> None:
    listed = documented(page("protocol.md"))
    assert ("GET", "/federation/v1/version") in listed
    assert ("PUT", "/directory/v1/users/{username}/keys") in listed


# --- error codes -------------------------------------------------------------------------


def all_error_classes() -> set[type[errors.FlameError]]:
    """Every FlameError subclass in the package (services define a few of their own)."""
    for module in pkgutil.walk_packages(flamechat.__path__, "flamechat."):
        if module.name.startswith("flamechat.storage.migrations") or module.name == "flamechat.__main__":
            continue
        importlib.import_module(module.name)
    found: set[type[errors.FlameError]] = set()
    todo: list[type[errors.FlameError]] = [errors.FlameError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_in_the_protocol() -> None:
    text = page("protocol.md")
    codes = {cls.code for cls in errors.ALL_ERRORS} | {cls.code for cls in all_error_classes()}
    codes |= set(_HTTP_CODES.values())
    assert {"invalid_request", "relay_quota_exceeded"} <= codes  # the walk found them
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert not missing, f"error codes missing from the table in docs/protocol.md: {missing}"


def test_the_error_table_gives_each_code_its_status() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}|other) \|", page("protocol.md"), re.MULTILINE))
    wrong = {
        cls.code: (rows.get(cls.code), cls.status)
        for cls in all_error_classes()
        if cls.code in rows and rows[cls.code] != str(cls.status)
    }
    assert rows, "the error table was not found"
    assert not wrong, f"docs/protocol.md gives the wrong HTTP status (documented, actual): {wrong}"


# --- names of modules and functions ------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_modules_and_functions_named_in_the_docs_exist(name: str) -> None:
    src = ROOT / "src" / "flamechat"
    gone = []
    for path, attribute in MODULE_REF.findall(page(name)):
        if not (src / path).is_file():
            gone.append(path)
            continue
        if attribute:
            target: Any = importlib.import_module("flamechat." + path[: -len(".py")].replace("/", "."))
            for part in attribute.split("."):
                target = getattr(target, part, None)
            if target is None:
                gone.append(f"{path}::{attribute}")
    assert not gone, f"docs/{name} names what does not exist: {gone}"


# --- test vectors ------------------------------------------------------------------------


def vectors() -> dict[str, str]:
    text = page("protocol.md")
    block = text[text.index("## Test vectors") :].split("```")[1]
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in block.splitlines() if line.strip())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def test_node_id_vector() -> None:
    v = vectors()
    key = NodeKey.from_seed(bytes.fromhex(v["node key seed (hex)"]))
    assert b64encode(key.public_key) == v["node public key"]
    assert key.node_id == v["node id"]


def test_signed_request_vector() -> None:
    v = vectors()
    key = NodeKey.from_seed(bytes.fromhex(v["node key seed (hex)"]))
    method, target = v["request"].split(" ", 1)
    body = v["body"].encode()
    assert hashlib.sha256(body).hexdigest() == v["body sha-256"]
    signed = sign_request(key, method, target, body, timestamp=int(v["timestamp"]), nonce=v["nonce"])
    assert signed.as_dict()["Flame-Signature"] == v["Flame-Signature"]


def test_signed_document_vector() -> None:
    v = vectors()
    key = NodeKey.from_seed(bytes.fromhex(v["node key seed (hex)"]))
    document = json.loads(v["document canonical"])
    assert canonical_json(document).decode() == v["document canonical"]
    signature = sign_document(key, v["document purpose"], document)
    assert b64encode(signature) == v["document signature"]


def test_receipt_id_vector() -> None:
    v = vectors()
    ids = v["receipt message ids"].split(",")
    assert receipt_id(v["receipt status"], v["receipt sender"], ids) == v["receipt id"]


# --- README ----------------------------------------------------------------------------


def test_readme_folders_and_make_targets_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    folders = re.findall(r"^\| `([\w./-]+/)` \|", readme, re.MULTILINE)
    assert folders, "the README's table of folders was not found"
    assert [f for f in folders if not (ROOT / f).is_dir()] == []
    rules = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = {
        t for line in re.findall(r"^make ([a-z ]+?)\s*(?:#|$)", readme, re.MULTILINE) for t in line.split()
    }
    assert named, "no make command found in the README"
    assert sorted(named - rules) == [], "the README names make targets the Makefile lacks"
