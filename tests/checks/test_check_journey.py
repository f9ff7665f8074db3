"""The journey check against a small shop API on 127.0.0.1: a login that returns a token and sets a
session cookie, a cart that needs both, a payment that fails on demand, and a few answers that
misbehave (slow, echoing the token back)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from agent.alerting.policy import AlertConfig
from agent.alerting.rules import compile_rule
from agent.config.load import parse_config
from agent.core.errors import ConfigError
from agent.engine.probe_runner import SharedResources, run_probe
from checks.base import BaseCheck, Result
from checks.http import HttpCheck
from checks.journey import JourneyCheck
from tests.support import factories
from tests.support.peers.servers import free_port, serve_app

PASSWORD = "correct-horse"


@dataclass
class Shop:
    """The shop's state: what it issued and what it saw, for the tests to look at."""

    port: int = 0
    fail_pay: bool = False
    tokens: list[str] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    seen: list[dict[str, Any]] = field(default_factory=list)  # path, Authorization, Cookie, body

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        """The token of the last login."""
        return self.tokens[-1]


def shop_app(shop: Shop) -> web.Application:
    async def note(request: web.Request) -> None:
        shop.seen.append(
            {
                "path": request.path_qs,
                "authorization": request.headers.get("Authorization"),
                "cookie": request.headers.get("Cookie"),
                "body": await request.text(),
            }
        )

    def signed_in(request: web.Request) -> bool:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return bearer in shop.tokens and request.cookies.get("session") in shop.sessions

    async def login(request: web.Request) -> web.Response:
        await note(request)
        creds = await request.json()
        if creds != {"user": "probe", "password": PASSWORD}:
            return web.json_response({"error": "who are you?"}, status=401)
        token, session = "tok-" + secrets.token_hex(12), secrets.token_hex(8)
        shop.tokens.append(token)
        shop.sessions.add(session)
        resp = web.json_response({"access_token": token, "expires_in": 3600, "scopes": None})
        resp.headers["X-Request-Id"] = "req-" + token
        resp.set_cookie("session", session)
        return resp

    async def cart(request: web.Request) -> web.Response:
        await note(request)
        if not signed_in(request):
            return web.json_response({"error": "sign in"}, status=401)
        return web.json_response({"items": [{"sku": "SKU-1", "quantity": 2}]})

    async def pay(request: web.Request) -> web.Response:
        await note(request)
        if not signed_in(request):
            return web.json_response({"error": "sign in"}, status=401)
        if shop.fail_pay:
            return web.json_response({"error": "card processor down"}, status=500)
        return web.json_response({"paid": True})

    async def slow(request: web.Request) -> web.Response:
        await note(request)
        await asyncio.sleep(5)
        return web.json_response({})

    async def profile(request: web.Request) -> web.Response:  # echoes the caller's token back
        await note(request)
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response({"token": bearer, "status": "locked"})

    async def order(request: web.Request) -> web.Response:
        await note(request)
        return web.json_response({"order": request.match_info["ref"]})

    async def motd(request: web.Request) -> web.Response:
        await note(request)
        return web.Response(text="line one\nline two\nserver 127.0.0.1\n")

    app = web.Application()
    app.router.add_get("/motd", motd)
    app.router.add_post("/login", login)
    app.router.add_get("/cart", cart)
    app.router.add_get("/pay", pay)
    app.router.add_get("/slow", slow)
    app.router.add_get("/profile", profile)
    app.router.add_post("/orders/{ref}", order)
    return app


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    state = Shop()
    runner, state.port = await serve_app(shop_app(state), access_log=None)
    yield state
    await runner.cleanup()


def login(**more: Any) -> dict[str, Any]:
    return {
        "name": "login",
        "method": "POST",
        "url": "BASE/login",
        "json": {"user": "probe", "password": PASSWORD},
        "expect": {"status": [200]},
        "save": {"token": "json.access_token"},
        **more,
    }


def bearer(name: str, path: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "url": f"BASE{path}", "headers": {"Authorization": "Bearer {{ token }}"}, **more}


CHECKOUT = [login(), bearer("cart", "/cart", expect={"status": [200]}), bearer("pay", "/pay")]


def journey(shop: Shop, steps: list[dict[str, Any]], **options: Any) -> JourneyCheck:
    def based(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("BASE", shop.base)
        if isinstance(value, list):
            return [based(v) for v in value]
        if isinstance(value, dict):
            return {k: based(v) for k, v in value.items()}
        return value

    return factories.check(JourneyCheck, **{"name": "checkout", "timeout": "2s", "steps": based(steps), **options})


async def run(check: BaseCheck, resources: SharedResources | None = None) -> Result:
    own = resources is None
    resources = resources or SharedResources("test")
    try:
        return await run_probe(check, check.targets()[0], resources)
    finally:
        if own:
            await resources.close()


# --- passing and failing journeys --------------------------------------------------------------


async def test_a_journey_passes_with_its_values(shop: Shop) -> None:
    r = await run(journey(shop, CHECKOUT))
    assert r.ok, r.error
    assert r.target == f"{shop.base}/login"
    assert r.values["steps"] == 3
    assert {k: v for k, v in r.values.items() if k.endswith(".status")} == {
        "step.login.status": 200,
        "step.cart.status": 200,
        "step.pay.status": 200,
    }
    steps = [r.values[f"step.{s}.duration"] for s in ("login", "cart", "pay")]
    assert all(0 < d < 1 for d in steps)
    assert sum(steps) <= r.values["duration"] <= r.duration_s
    assert set(r.values) == {
        "duration",
        "steps",
        *(f"step.{s}.{v}" for s in ("login", "cart", "pay") for v in ("duration", "status")),
    }
    token = shop.token()  # the cart saw the saved token and the login's cookie
    cart = next(s for s in shop.seen if s["path"] == "/cart")
    assert cart["authorization"] == f"Bearer {token}" and cart["cookie"].startswith("session=")


async def test_the_cart_needs_the_token_and_the_cookie(shop: Shop) -> None:
    no_token = await run(journey(shop, [login(), {"name": "cart", "url": "BASE/cart"}]))
    assert no_token.error == f"step cart: HTTP 401 from 127.0.0.1:{shop.port}"
    await run(journey(shop, [login()]))
    no_cookie = await run(  # the token alone, from a plain http check (whose session keeps no cookies)
        factories.check(HttpCheck, url=f"{shop.base}/cart", headers={"Authorization": f"Bearer {shop.token()}"}),
    )
    assert no_cookie.error == f"HTTP 401 from 127.0.0.1:{shop.port}"


async def test_a_failing_step_is_named_with_the_http_checks_words(shop: Shop) -> None:
    shop.fail_pay = True
    r = await run(journey(shop, CHECKOUT))
    assert not r.ok
    assert r.error_kind == "http_status"
    assert r.error == f"step pay: HTTP 500 from 127.0.0.1:{shop.port}"
    assert r.values["steps"] == 2
    assert r.values["step.pay.status"] == 500 and r.values["step.cart.status"] == 200


async def test_every_http_expect_key_judges_a_step(shop: Shop) -> None:
    cart = bearer(
        "cart",
        "/cart",
        expect={
            "status": ["2xx"],
            "body_contains": "SKU-1",
            "body_regex": r'"quantity":\s*2',
            "headers": {"Content-Type": "^application/json"},
            "json": [
                {"path": "$.items[0].sku", "equals": "SKU-1"},
                {"path": "items[0].quantity", "op": ">", "value": 1},
            ],
        },
    )
    assert (await run(journey(shop, [login(), cart]))).ok
    cart["expect"]["json"][1]["value"] = 5
    r = await run(journey(shop, [login(), cart]))
    assert (r.error_kind, r.error) == ("body", "step cart: json items[0].quantity is 2, expected > 5")


async def test_a_refused_connection_names_the_step(shop: Shop) -> None:
    port = free_port()
    r = await run(journey(shop, [login(), {"name": "stock", "url": f"http://127.0.0.1:{port}/"}]))
    assert (r.error_kind, r.error) == ("refused", f"step stock: connection refused by 127.0.0.1:{port}")
    assert r.values["steps"] == 1


# --- saves and templates -----------------------------------------------------------------------


async def test_saves_from_a_header_and_a_regex_fill_url_json_and_body(shop: Shop) -> None:
    steps = [
        login(
            save={"req": "header.X-Request-Id", "tok": 'regex:"access_token":\\s*"([^"]+)"', "ttl": "json.expires_in"}
        ),
        {
            "name": "order",
            "method": "POST",
            "url": "BASE/orders/{{ ttl }}-{{tok}}",
            "json": {"ref": "{{ req }}", "n": [1, "{{ ttl }}"]},
        },
        {"name": "again", "method": "POST", "url": "BASE/orders/x", "body": "ref={{ req }}"},
    ]
    r = await run(journey(shop, steps))
    assert r.ok, r.error
    token = shop.token()
    order, again = shop.seen[1], shop.seen[2]
    assert order["path"] == f"/orders/3600-{token}"
    assert order["body"] == f'{{"ref": "req-{token}", "n": [1, "3600"]}}'
    assert again["body"] == f"ref=req-{token}"


@pytest.mark.parametrize(
    ("save", "kind", "error"),
    [
        ("json.acces_token", "body", "step login: save token: json.acces_token not found"),
        ("json.scopes", "body", "step login: save token: json.scopes not found"),  # null is nothing
        ("header.X-Token", "expect", "step login: save token: header.X-Token not found"),
        ("regex:token=(\\w+)", "body", "step login: save token: regex:token=(\\w+) not found"),
    ],
)
async def test_a_save_that_finds_nothing_fails_its_step(shop: Shop, save: str, kind: str, error: str) -> None:
    r = await run(journey(shop, [login(save={"token": save}), bearer("cart", "/cart")]))
    assert (r.ok, r.error_kind, r.error) == (False, kind, error)
    assert r.values["steps"] == 0 and r.values["step.login.status"] == 200
    assert "step.cart.status" not in r.values


async def test_a_saved_value_that_breaks_a_header_fails_the_step(shop: Shop) -> None:
    motd = {"name": "motd", "url": "BASE/motd", "save": {"note": "regex:(?s)(line.*two)", "first": "regex:line \\w+"}}
    fine = await run(
        journey(
            shop,
            [
                motd,
                {"name": "cart", "url": "BASE/cart", "headers": {"X-Note": "{{ first }}"}, "expect": {"status": [401]}},
            ],
        )
    )
    assert fine.ok, fine.error  # the control: one line
    r = await run(journey(shop, [motd, {"name": "cart", "url": "BASE/cart", "headers": {"X-Note": "{{ note }}"}}]))
    assert (r.error_kind, r.error) == ("expect", "step cart: header 'X-Note': a saved value put a line break in it")
    assert shop.seen[-1]["path"] == "/motd"  # the request was never sent


# --- config errors -------------------------------------------------------------------------------

CONFIG = """\
checks:
  - name: checkout-api
    type: journey
    steps:
      - name: login
        method: POST
        url: https://api.example.com/login
        json: {user: probe, password: "${PROBE_PASSWORD}"}
        save: {token: json.access_token}
      - name: cart
        url: https://api.example.com/cart
        headers: {Authorization: "Bearer {{ tokn }}"}
    alerts:
      - {when: down, for: 2m, severity: major}
      - {when: "step.cart.duration > 2s", for: 5m, severity: minor}
"""


def config_errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", env={"PROBE_PASSWORD": "hunter2-canary"})
    assert "hunter2-canary" not in str(info.value)
    return [str(issue) for issue in info.value.issues]


def test_a_template_of_a_value_no_earlier_step_saved_is_a_config_error_at_its_place() -> None:
    assert config_errors(CONFIG) == [
        "c.yaml:12:34: checks[0].steps[1].headers.Authorization: "
        "step cart: {{ tokn }} is not saved by an earlier step; did you mean 'token'?"
    ]
    own = CONFIG.replace("save: {token: json.access_token}", "save: {}").replace("tokn", "token")
    assert config_errors(
        own.replace("headers: {Authorization", "save: {token: json.x}\n        headers: {Authorization")
    ) == [
        "c.yaml:13:34: checks[0].steps[1].headers.Authorization: step cart: {{ token }} is not saved by an earlier step"
    ]
    cfg = parse_config(CONFIG.replace("tokn", "token"), "c.yaml", env={"PROBE_PASSWORD": "p"})
    (spec,) = cfg.checks
    assert [r.when for r in spec.rules] == ["down", "step.cart.duration > 2s"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            ("step.cart.duration", "step.cartt.duration"),
            "c.yaml:15:16: checks[0].alerts[1].when: "
            "this journey has no step 'cartt'; did you mean 'cart'? (its steps: login, cart)",
        ),
        (("step.cart.duration > 2s", "step.cart.status != 200"), None),
        (
            ("step.cart.duration > 2s", "step.cart.bytes > 2"),
            "c.yaml:15:16: checks[0].alerts[1].when: journey checks do not measure",
        ),
        (("name: cart", "name: login"), "c.yaml:10:15: checks[0].steps[1].name: duplicate step name 'login'"),
        (("name: cart", "name: my cart"), "c.yaml:10:15: checks[0].steps[1].name: invalid step name 'my cart'"),
        (
            ("{token: json.access_token}", "{token: body.token}"),
            "c.yaml:9:23: checks[0].steps[0].save.token: "
            "invalid save source 'body.token': use json.PATH, header.NAME or regex:PATTERN",
        ),
        (
            ("{token: json.access_token}", "{token: 'regex:(['}"),
            "c.yaml:9:23: checks[0].steps[0].save.token: invalid regex '(['",
        ),
        (
            ("{{ token }}", "{{ to ken }}"),
            "checks[0].steps[1].headers.Authorization: step cart: invalid template '{{ to ken }}'",
        ),
        (
            ("url: https://api.example.com/cart", "url: ftp://api.example.com/{{ token }}"),
            "c.yaml:11:14: checks[0].steps[1].url: "
            "invalid URL 'ftp://api.example.com/{{ token }}': scheme must be http or https",
        ),
        (("json: {user", "body: x\n        json: {user"), "c.yaml:5:9: checks[0].steps[0]: set json or body, not both"),
        (
            ("    steps:\n", "    targets: [http://x/]\n    steps:\n"),
            "c.yaml:4:5: checks[0].targets: journey checks take no target",
        ),
    ],
)
def test_journey_config_errors(change: tuple[str, str], error: str | None) -> None:
    text = CONFIG.replace("tokn", "token").replace(*change)
    if error is None:
        parse_config(text, "c.yaml", env={"PROBE_PASSWORD": "p"})
        return
    assert any(error in e for e in config_errors(text)), config_errors(text)


def test_rules_on_step_values_compile_with_their_units() -> None:
    rule = compile_rule(
        0, AlertConfig(when="step.cart.duration > 2s", severity="minor"), JourneyCheck.VALUES, "journey"
    )
    assert (rule.value_name, rule.unit, rule.threshold) == ("step.cart.duration", "s", 2.0)
    verdict = rule.evaluate(factories.result("checkout", type="journey", values={"step.cart.duration": 2.5}))
    assert verdict.holds and verdict.explanation == "step.cart.duration (2.5s) > 2s"
    rule = compile_rule(1, AlertConfig(when="step.pay.status >= 500", severity="major"), JourneyCheck.VALUES, "journey")
    assert rule.unit == "1"
    with pytest.raises(ValueError, match=r"journey checks do not measure 'step\.cart\.body_bytes'"):
        compile_rule(2, AlertConfig(when="step.cart.body_bytes > 1", severity="minor"), JourneyCheck.VALUES, "journey")


# --- secrets, cookies, deadline ------------------------------------------------------------------


async def test_a_saved_token_never_leaks(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = bearer("profile", "/profile", expect={"json": [{"path": "$.token", "equals": "nobody"}]})
    check = journey(shop, [login(), echo])
    r = await run(check)
    assert r.error == "step profile: json $.token is '<saved:token>', expected 'nobody'"
    shop.fail_pay = True  # a host taken from an answer is masked too
    steps = [
        {"name": "motd", "url": "BASE/motd", "save": {"host": "regex:server (\\S+)"}},
        login(),
        bearer("pay", "/pay"),
    ]
    steps[2]["url"] = f"http://{{{{ host }}}}:{shop.port}/pay"
    r2 = await run(journey(shop, steps))
    assert r2.error == f"step pay: HTTP 500 from <saved:host>:{shop.port}"
    tokens = shop.tokens
    shown = [r.error, r2.error, repr(r), repr(r2), repr(check), repr(check.config), caplog.text, *map(str, r.values)]
    assert len(tokens) == 2 and all(t not in text for t in tokens for text in shown)


async def test_no_cookie_is_shared_between_runs(shop: Shop) -> None:
    check = journey(shop, CHECKOUT)
    resources = SharedResources("test")
    try:
        first, second = await run(check, resources), await run(check, resources)
        plain = await run_probe(factories.check(HttpCheck, url=f"{shop.base}/cart"), f"{shop.base}/cart", resources)
    finally:
        await resources.close()
    assert first.ok and second.ok and plain.error == f"HTTP 401 from 127.0.0.1:{shop.port}"
    logins = [s["cookie"] for s in shop.seen if s["path"] == "/login"]
    carts = [s["cookie"] for s in shop.seen if s["path"] == "/cart"]
    assert logins == [None, None]  # each run starts with an empty jar
    assert len(carts) == 3 and carts[0] != carts[1] and carts[2] is None  # its own session; none for http


async def test_the_deadline_mid_journey_names_the_step(shop: Shop) -> None:
    r = await run(
        journey(shop, [login(), bearer("cart", "/cart"), {"name": "stock", "url": "BASE/slow"}], timeout="0.5s")
    )
    assert (r.error_kind, r.error) == ("timeout", "step stock: no answer within 0.5s (the whole journey's timeout)")
    assert r.values["steps"] == 2 and 0.45 < r.duration_s < 1.0


def test_saved_values_and_the_headers_holding_them_are_masked() -> None:
    from checks.journey_probe import Saved

    saved = Saved()
    saved.save("token", "tok-123456")
    saved.save("a", "ab1")  # too short to mask on its own
    saved.save("b", "cd2")
    header = saved.fill("Bearer {{ token }}", mask=True)
    sig = saved.fill("{{ a }}{{ b }}", mask=True)
    assert (header, sig) == ("Bearer tok-123456", "ab1cd2")
    text = f"echo: {header} / {sig} / tok-123456 / ab1 / 127.0.0.1"
    assert saved.redact(text) == "echo: Bearer <saved:token> / <saved:a><saved:b> / <saved:token> / ab1 / 127.0.0.1"
    assert "tok-123456" not in repr(saved)


def test_a_saved_value_whose_case_a_resolver_changed_is_masked_too() -> None:
    from checks.journey_probe import Saved

    saved = Saved()
    saved.save("token", "SecretTok9C12")
    text = "step pay: cannot resolve secrettok9c12.invalid"  # hostnames come back lowercased
    assert saved.redact(text) == "step pay: cannot resolve <saved:token>.invalid"
