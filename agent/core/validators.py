"""Config validators that checks and sinks share: one copy of each, one wording of each error.

Each raises :class:`ValueError` with a message fit for a config error (pydantic puts the key's
path in front: ``checks[3].ca_file: no such file: '/etc/ca.pem'``) and never echoes a secret.
Use them as pydantic ``AfterValidator`` / ``BeforeValidator`` / ``field_validator`` bodies.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BeforeValidator, SecretStr, ValidationInfo

from agent.core.subprocesses import base_env, resolve_program

# The names people write and other tools read back, one pattern each: a check's, a maintenance
# window's or a journey step's name (letters, digits, '.', '_', '-'), and a label's name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def regex(value: str, what: str = "regex") -> str:
    """``value`` if it compiles as a regex; else ``invalid {what} 'VALUE': why``."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid {what} {value!r}: {exc}") from None
    return value


def ca_file(value: str) -> str:
    """``value`` if it is a file of PEM certificates a TLS client can trust."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
    except FileNotFoundError:
        raise ValueError(f"no such file: {value!r}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{value!r} holds no usable PEM certificates: {exc}") from None
    return value


def secret_file(path: object) -> object:
    """The secret in the file at ``path``, read once at load, its trailing newline dropped (for a
    ``BeforeValidator``: the field holds the secret, never the path)."""
    if path is None:
        return None
    if not isinstance(path, str):
        raise ValueError("expected the path of a file holding the secret")
    try:
        with open(path, "rb") as f:
            text = f.read().decode().rstrip("\r\n")
    except FileNotFoundError:
        raise ValueError(f"no such file: {path!r}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path!r} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{path!r} is empty")
    return text


SecretFile = Annotated[SecretStr | None, BeforeValidator(secret_file)]
"""A ``*_file`` option: the path of a file holding a secret, which the field holds once loaded."""


def string_args(argv: object) -> object:
    """``argv`` unless it is a list holding something other than a string (for a ``mode="before"``
    validator: YAML reads ``5432``, ``yes`` or ``0755`` as numbers or booleans)."""
    if isinstance(argv, list):
        for i, arg in enumerate(argv):
            if not isinstance(arg, str):  # never echo the value: it may be a secret
                raise ValueError(
                    f"command[{i}] is not a string: quote every argument"
                    " (YAML reads 5432, yes or 0755 as numbers or booleans)"
                )
    return argv


def program_argv(argv: list[str], env: Mapping[str, str], also: Sequence[str] = ()) -> list[str]:
    """``argv`` if it names a program that exists and may run (looked up on the ``PATH`` of
    :func:`agent.core.subprocesses.base_env` with ``env``, then in ``also``) and holds no NUL."""
    if not argv:
        raise ValueError("command must name a program: [PROGRAM, ARG, ...]")
    if any("\0" in arg for arg in argv):
        raise ValueError("command arguments must not contain NUL bytes")
    resolve_program(argv[0], base_env(env)["PATH"], also)  # missing: a load error
    return argv


def command_argv(argv: list[str], info: ValidationInfo) -> list[str]:
    """:func:`program_argv` for a model's ``command``, with the ``env`` declared before it (use as
    ``field_validator("command")(command_argv)``)."""
    return program_argv(argv, info.data.get("env") or {})
