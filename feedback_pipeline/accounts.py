"""``FEEDBACK_ACCOUNTS_FILE``: more accounts per provider, declared in a YAML file.

Why a file: agencies and larger companies have several Mintlify projects, Usersnap projects, Hub
tenants or Mapbox tokens, and one set of variables per provider cannot hold them. The plain
variables keep configuring one account each; the file adds more::

    mintlify:
      - project_id: docs-sdk
        api_key: {env: MINTLIFY_API_KEY_DOCS_SDK}

A key is the provider's variable name without its prefix, lowercased (``MINTLIFY_PROJECT_ID`` ->
``project_id``, ``FORMBRICKS_HUB_API_KEY`` -> ``hub_api_key``). A secret is only ever
``{env: NAME}``: the file holds no secret, and the value is read at run time through Dagster
``EnvVar`` like the plain variables. Every mistake fails when the definitions load, with a message
naming the file, the entry and the key, and never echoing a value that could be a secret.

This module knows no provider by name: the caller hands it each provider's settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

ACCOUNTS_FILE_VAR = "FEEDBACK_ACCOUNTS_FILE"
ENV_KEY = "env"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AccountsFileError(ValueError):
    """The accounts file is unreadable or wrong; the message names file, entry and key."""


class SettingLike(Protocol):
    """What the parser needs to know of one provider setting (a provider spec's setting)."""

    var: str
    required: bool
    secret: bool
    default: str | None


@dataclass(frozen=True)
class ProviderSettings:
    """One provider's settings as the parser sees them, and which key is its ``account_id``."""

    settings: Sequence[SettingLike]
    account_key: str


@dataclass(frozen=True)
class Account:
    """One configured account of a provider.

    ``values`` holds the plain (non-secret) settings by key; ``env_vars`` maps a key to the
    environment variable that holds its value at run time (always so for secrets). ``source`` says
    where the account was declared, for messages: ``environment`` or ``<file> mintlify[2]``.
    """

    provider: str
    account_id: str
    source: str
    values: Mapping[str, str | None] = field(default_factory=dict)
    env_vars: Mapping[str, str] = field(default_factory=dict)


def setting_key(var: str) -> str:
    """``MINTLIFY_PROJECT_ID`` -> ``project_id``: the variable without its provider prefix."""
    return var.split("_", 1)[1].lower()


def environment_account(provider: str, spec: ProviderSettings, environ: Mapping[str, str]) -> Account | None:
    """The account the plain variables configure, or None when a required one is unset."""
    values: dict[str, str | None] = {}
    env_vars: dict[str, str] = {}
    for setting in spec.settings:
        key = setting_key(setting.var)
        if environ.get(setting.var):
            env_vars[key] = setting.var
            if not setting.secret:
                values[key] = environ[setting.var]
        elif setting.required:
            return None
        else:
            values[key] = setting.default
    return Account(provider, _account_id(values, env_vars, environ, spec), "environment", values, env_vars)


def load_accounts(path: str | Path, specs: Mapping[str, ProviderSettings], environ: Mapping[str, str], *, existing: Sequence[Account] = ()) -> list[Account]:
    """Parse and validate the accounts file at ``path``.

    ``existing`` are the accounts already configured (the plain variables'): a file entry with the
    same (provider, account_id) is refused, since two accounts would then share one set of rows
    and cursors.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AccountsFileError(f"{ACCOUNTS_FILE_VAR} {where}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise AccountsFileError(f"{ACCOUNTS_FILE_VAR} {where}: not valid YAML{line}") from None
    if document is None:
        return []
    if not isinstance(document, dict):
        raise AccountsFileError(f"{where}: the top level must map provider names to lists of accounts")

    seen = {(a.provider, a.account_id): a.source for a in existing}
    accounts: list[Account] = []
    for provider, entries in document.items():
        if provider not in specs:
            known = ", ".join(sorted(specs))
            raise AccountsFileError(f"{where}: unknown provider {provider!r} (known: {known})")
        if not isinstance(entries, list):
            raise AccountsFileError(f"{where}: {provider} must be a list of accounts (entries starting with '-')")
        for index, entry in enumerate(entries, start=1):
            account = _parse_entry(where, provider, index, entry, specs[provider], environ)
            identity = (provider, account.account_id)
            if identity in seen:
                raise AccountsFileError(
                    f"{where}: {provider}[{index}] has account_id {account.account_id!r}, "
                    f"already configured by {seen[identity]}; each (provider, account_id) must be unique"
                )
            seen[identity] = account.source
            accounts.append(account)
    return accounts


def _parse_entry(where: str, provider: str, index: int, entry: Any, spec: ProviderSettings, environ: Mapping[str, str]) -> Account:
    label = f"{where}: {provider}[{index}]"
    if not isinstance(entry, dict):
        raise AccountsFileError(f"{label} must be a mapping of setting keys to values")
    by_key = {setting_key(s.var): s for s in spec.settings}
    for key in entry:
        if key not in by_key:
            raise AccountsFileError(f"{label}: unknown key {key!r} (known: {', '.join(by_key)})")
    values: dict[str, str | None] = {}
    env_vars: dict[str, str] = {}
    for key, setting in by_key.items():
        if key not in entry or entry[key] is None:
            if setting.required:
                raise AccountsFileError(f"{label}: required key {key!r} is missing")
            values[key] = setting.default
            continue
        raw = entry[key]
        if isinstance(raw, dict):
            env_vars[key] = _env_reference(label, key, raw)
        elif setting.secret:
            # The value is never echoed: it may be the secret itself.
            raise AccountsFileError(f"{label}: key {key!r} is a secret written inline; write it as {{env: VARIABLE_NAME}} and set that variable")
        elif isinstance(raw, (str, int)) and not isinstance(raw, bool):
            values[key] = str(raw)
        else:
            raise AccountsFileError(f"{label}: key {key!r} must be a text value or {{env: VARIABLE_NAME}}")
    account_id = _account_id(values, env_vars, environ, spec)
    if not account_id:
        source = f"variable {env_vars[spec.account_key]}" if spec.account_key in env_vars else "value"
        raise AccountsFileError(f"{label}: key {spec.account_key!r} (the account_id) is empty: set its {source}")
    return Account(provider, account_id, f"{where} {provider}[{index}]", values, env_vars)


def _env_reference(label: str, key: str, raw: Mapping[Any, Any]) -> str:
    name = raw.get(ENV_KEY)
    if set(raw) != {ENV_KEY} or not isinstance(name, str) or not _VARIABLE_NAME.fullmatch(name):
        raise AccountsFileError(f"{label}: key {key!r} must be {{env: VARIABLE_NAME}} with one variable name")
    return name


def _account_id(values: Mapping[str, str | None], env_vars: Mapping[str, str], environ: Mapping[str, str], spec: ProviderSettings) -> str:
    """The account's ``account_id``: its account key's value (read from the environment when the
    file points the key at a variable)."""
    key = spec.account_key
    if key in env_vars:
        return environ.get(env_vars[key], "")
    return values.get(key) or ""
