"""The ``auth`` option of ``type: http``: basic or bearer credentials, inline or read from a file at
load, and the Authorization header they make.

    auth: {basic: {username: probe, password_file: /etc/firstwatch/probe.pw}}
    auth: {bearer: {token_file: /etc/firstwatch/api.token}}
    auth: {bearer: TOKEN}

A file's content is read once when the config loads, its trailing newline dropped. Secrets are held
as ``SecretStr`` and never appear in error texts.
"""

from __future__ import annotations

import base64
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, model_validator

from agent.core import validators

SecretFile = validators.SecretFile  # holds the file's content once loaded


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password: SecretStr | None = None
    password_file: SecretFile = None

    @model_validator(mode="after")
    def _one_secret(self) -> BasicAuth:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("basic auth needs one of password or password_file")
        if ":" in self.username:
            raise ValueError("basic auth: the username cannot contain ':'")
        return self


class BearerAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    token_file: SecretFile = None

    @model_validator(mode="after")
    def _one_secret(self) -> BearerAuth:
        secret = self.token or self.token_file
        if (self.token is None) == (self.token_file is None) or secret is None:
            raise ValueError("bearer auth needs one of token or token_file")
        if any(c in secret.get_secret_value() for c in "\r\n"):
            raise ValueError("the bearer token must be one line")  # never echo it
        return self


def _token_alone(value: object) -> object:
    """``bearer: TOKEN`` is ``bearer: {token: TOKEN}``."""
    return {"token": value} if isinstance(value, str) else value


class HttpAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    basic: BasicAuth | None = None
    bearer: Annotated[
        BearerAuth | None,
        BeforeValidator(_token_alone, json_schema_input_type=str | BearerAuth | None),
    ] = None  # a token, or {token} or {token_file}

    @model_validator(mode="after")
    def _one_scheme(self) -> HttpAuth:
        if (self.basic is None) == (self.bearer is None):
            raise ValueError("auth needs exactly one of basic or bearer")
        return self

    def header(self) -> str:
        """The value of the Authorization header."""
        if self.basic is not None:
            secret = self.basic.password or self.basic.password_file
            assert secret is not None
            pair = f"{self.basic.username}:{secret.get_secret_value()}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        assert self.bearer is not None
        token = self.bearer.token or self.bearer.token_file
        assert token is not None
        return "Bearer " + token.get_secret_value()
