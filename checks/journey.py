"""``type: journey``: HTTP steps in order, one cookie jar, one total deadline: a user's path through
a site or an API (log in, read the cart, pay), judged step by step.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    steps   the requests, in order (at least one), each a mapping of:

      name              required; unique within the journey; letters, digits, '.', '_', '-'
      method            GET (default), HEAD, POST, PUT, PATCH, DELETE, OPTIONS or TRACE
      url               the http:// or https:// URL
      headers           request headers (their values never appear in error texts)
      json              a request body sent as JSON (with ``Content-Type: application/json``)
      body              a request body as text, sent as UTF-8; json or body, not both
      expect            what a good answer looks like: every key of http's ``expect`` (``status``,
                        ``body_contains``, ``body_regex``, ``headers``, ``json``), judged by the same
                        code with the same words; default: any 2xx
      save              name -> the value of the answer later steps may use: ``json.PATH`` (a path
                        as in http's ``expect.json``: ``json.access_token``, ``json.items[0].id``;
                        numbers and true/false as JSON text), ``header.NAME`` (its first value) or
                        ``regex:PATTERN`` (searched in the body: its first group, else the whole
                        match). A save that finds nothing (or null, or an empty text) fails the step
      follow_redirects  follow 3xx answers, at most 10 (default true)
      tls_verify        verify the certificate chain and name (default true)
      max_body          fail past this many body bytes after decompression (default 1MiB)

``{{ name }}`` in a step's ``url``, a header value, its ``body`` or a string inside its ``json`` is
the value an earlier step saved (``${VAR}`` is the environment, filled in when the config loads).
A name no earlier step saves is a config error at its line and column: ``step cart: {{ tokn }}
is not saved by an earlier step; did you mean 'token'?``; so is a rule naming a step the journey
does not have (``step.cartt.duration > 2s``).

Each run starts with a fresh cookie jar, kept across its steps (a login's session cookie reaches
the next steps) and never shared with another run or another check; cookies set for an IP address
are kept too. ``timeout`` is the deadline of the whole journey, not of each step.

Saved values are never shown: not in error texts, values, logs, events or the timeline. Where an
answer echoes one into an error (a body in a ``expect.json`` failure, a host name from a templated
URL), it reads ``<saved:NAME>`` (values shorter than 4 characters are left: they cannot be told
from the numbers in an error). Values from ``${VAR}`` keep the config's redaction.

Values:

    duration            s  the whole journey, from its first request to its last answer or failure
    steps               1  how many steps passed (all of them when the journey passed)
    step.NAME.duration  s  one step's request, including its body; rules may name it:
                           ``step.cart.duration > 2s``
    step.NAME.status    1  one step's HTTP status code (of the final answer, after redirects)

Failures name the step, then say why in the http check's words, with its error kinds:
``step cart: HTTP 500 from api.example.com:443`` (``http_status``), ``step cart: json $.items
missing`` (``body``), ``step login: connection refused by 10.0.0.5:443`` (``refused``); a save that
finds nothing, ``step login: save token: json.access_token not found`` (``body``; ``expect`` for a
header); the deadline, ``step pay: no answer within 20s (the whole journey's timeout)``
(``timeout``). The summary of a ``down`` rule reads ``checkout-api: down (step cart: HTTP 500 from
api.example.com:443)``. The check's target is its first step's URL.

The request of each step is made by :mod:`checks.journey_probe` (aiohttp, imported when the check
is built); the step options and the templates are checked in :mod:`checks.journey_steps`.

Example::

    - name: shop-browse
      type: journey
      interval: 1m
      timeout: 20s
      steps:
        - name: products
          url: https://shop.example.com/api/products
          expect: {status: [200], json: [{path: "$.products[0].sku", matches: "."}]}
          save: {sku: "json.products[0].sku"}
        - name: add
          method: POST
          url: https://shop.example.com/api/cart
          json: {sku: "{{ sku }}", quantity: 1}
          expect: {status: [200, 201], headers: {Set-Cookie: "cart="}}
        - name: cart
          url: https://shop.example.com/api/cart
          expect: {status: [200], json: [{path: "$.items[0].quantity", op: ">=", value: 1}]}
      alerts:
        - {when: down, for: 2m, severity: major}
        - {when: "step.cart.duration > 2s", for: 5m, severity: minor}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec
from checks.journey_steps import JourneyStep, Loc, rule_issue, step_issues

if TYPE_CHECKING:
    from checks.journey_probe import JourneyProbe


def _invalid(title: str, issues: list[tuple[Loc, str]]) -> ValidationError:
    """One validation error per issue, each at its own place (the config shows each at its line)."""
    details = [
        InitErrorDetails(type="value_error", loc=loc, input=None, ctx={"error": ValueError(message)})
        for loc, message in issues
    ]
    return ValidationError.from_exception_data(title, details)


class JourneyConfig(CheckConfig):
    steps: Annotated[list[JourneyStep], Field(min_length=1)]

    @field_validator("steps")
    @classmethod
    def _across_steps(cls, steps: list[JourneyStep]) -> list[JourneyStep]:
        issues = step_issues(steps)
        if issues:
            raise _invalid("steps", issues)
        return steps

    @model_validator(mode="after")
    def _rules_name_steps(self) -> JourneyConfig:
        # Rules are compiled by the config loader from the values every journey declares
        # (``step.NAME.duration``); only the journey knows its step names. In the config, a check's
        # entry is validated as one model with its ``alerts:``, so they are here to be judged.
        names = [step.name for step in self.steps]
        issues: list[tuple[Loc, str]] = []
        for j, alert in enumerate(getattr(self, "alerts", None) or ()):
            when = getattr(alert, "when", None)
            if isinstance(when, str) and (problem := rule_issue(when, names)) is not None:
                issues.append((("alerts", j, "when"), problem))
        if issues:
            raise _invalid("alerts", issues)
        return self


class JourneyCheck(BaseCheck):
    TYPE: ClassVar[str] = "journey"
    TARGET_KEY: ClassVar[str | None] = None
    Config: ClassVar[type[CheckConfig]] = JourneyConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("duration", "s", "the whole journey, from its first request to its last answer or failure"),
        ValueSpec("steps", "1", "how many steps passed"),
        ValueSpec("step.NAME.duration", "s", "one step's request, including its body"),
        ValueSpec("step.NAME.status", "1", "one step's HTTP status code"),
    )

    def __init__(self, config: CheckConfig) -> None:
        assert isinstance(config, JourneyConfig)
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        # aiohttp is imported when the check is built, never when a config loads (as for http)
        from checks.journey_probe import JourneyProbe

        self._impl: JourneyProbe = JourneyProbe(config)

    def __repr__(self) -> str:  # headers and bodies may hold secrets
        return f"<JourneyCheck {self._cfg.name!r}>"

    def targets(self) -> list[str]:
        return [self._cfg.steps[0].url]  # the first step has no templates: nothing is saved before it

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        return await self._impl.probe(ctx)
