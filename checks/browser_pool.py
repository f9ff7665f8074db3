"""One shared headless Chromium for the browser checks of a runtime, bounded and self-healing.

A :class:`BrowserPool` is created by the runtime's shared resources on the first browser probe
(``ProbeContext.browser()``) and closed by them. It owns one Playwright driver and one Chromium
process, always the system's (``agent.browser.executable``, else the first of
:data:`EXECUTABLES` on PATH): nothing is downloaded. Each run gets a fresh browser context (no
cookie, cache or storage shared between runs) through :meth:`BrowserPool.context`, at most
``concurrency`` at once (an ``asyncio.Semaphore``); the context is closed when the run ends,
also when the runner's deadline cancels it.

A Chromium that crashed or was killed (disconnected), or that hangs (a launch or a new context
that times out), is killed and started again on the next run; :attr:`BrowserPool.restarts`
counts those restarts (exported as ``firstwatch.browser.restarts``).

:func:`install_problems` says what a machine lacks to run browser checks (the ``playwright``
package, a Chromium); the config loader reports it. Playwright itself is imported only when a
browser is launched, never when this module loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import secrets
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.core.errors import FirstwatchError
from agent.core.units import format_duration

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

log = logging.getLogger("firstwatch.browser")

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")
PIP_HINT = "pip install 'firstwatch[browser]'"
APT_HINT = "apt-get install -y chromium"
LAUNCH_TIMEOUT = 30.0  # seconds for Chromium to start and answer
CONTEXT_TIMEOUT = 10.0  # seconds for a new browser context; past it the browser is deemed hung
CLOSE_TIMEOUT = 5.0  # seconds to close a context, the browser or the driver before giving up on it
_FLAGS = (
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-breakpad",
    "--mute-audio",
)


@dataclass(frozen=True)
class BrowserSettings:
    """``agent.browser``: the Chromium to run (None: look on PATH) and how many pages at once."""

    executable: str | None = None
    concurrency: int = 2


class BrowserUnavailable(FirstwatchError):
    """No browser for this run: it could not start, or it hangs (the run fails, the next restarts it)."""


def find_executable(configured: str | None) -> str | None:
    """The Chromium to launch: ``configured`` if it is an executable file, else the first of
    :data:`EXECUTABLES` on PATH; None when there is none."""
    if configured:
        return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    for name in EXECUTABLES:
        if found := shutil.which(name):
            return found
    return None


def install_problems(configured: str | None) -> list[str]:
    """What this machine lacks to run browser checks, each with what to install (empty: nothing)."""
    problems = []
    if importlib.util.find_spec("playwright") is None:
        problems.append(f"browser checks need the playwright package: {PIP_HINT}")
    if find_executable(configured) is None:
        if configured:
            problems.append(
                f"browser checks need Chromium: agent.browser.executable {configured!r} is not an executable"
                f" file ({APT_HINT}, or set agent.browser.executable to its path)"
            )
        else:
            problems.append(
                f"browser checks need Chromium, and none of {', '.join(EXECUTABLES)} is on PATH: {APT_HINT},"
                " or set agent.browser.executable"
            )
    return problems


class BrowserPool:
    """One Chromium shared by every browser check of a runtime (see the module docstring)."""

    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self.restarts = 0  # launches after the first: a crashed, killed or hung browser started again
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._driver: Playwright | None = None
        self._browser: Browser | None = None
        self._pid: int | None = None
        self._marker = ""
        self._launches = 0
        self._launching: asyncio.Task[Browser] | None = None
        self._hung = False
        self._closed = False
        self._pending: set[asyncio.Task[Any]] = set()  # contexts opening or closing for cancelled runs

    @property
    def browser(self) -> Browser | None:
        """The running Playwright ``Browser`` (None before the first run or after a crash)."""
        return self._browser

    @property
    def pid(self) -> int | None:
        """The process id of the running Chromium (its browser process), when known."""
        return self._pid

    def alive(self) -> bool:
        """Whether the browser is running and answering (not crashed, killed or hung)."""
        return self._browser is not None and self._browser.is_connected() and not self._hung

    @contextlib.asynccontextmanager
    async def context(self, timeout: float = CONTEXT_TIMEOUT) -> AsyncIterator[BrowserContext]:
        """A fresh browser context for one run, closed when the block ends (cancelled or not).
        Waits for a free slot first. Raises :class:`BrowserUnavailable` when the browser cannot
        start, or does not open a context within ``timeout`` seconds (it is then deemed hung,
        even if the run was cancelled meanwhile, and restarted on the next run)."""
        async with self._slots:
            browser = await self._ready(LAUNCH_TIMEOUT)
            opening = asyncio.create_task(self._new_context(browser, timeout))
            try:
                ctx = await asyncio.shield(opening)  # a cancelled run still learns whether it hangs
            except asyncio.CancelledError:
                self._pending.add(opening)
                opening.add_done_callback(self._orphan)
                raise
            try:
                yield ctx
            finally:
                await self._close_context(ctx)

    async def close(self) -> None:
        """Close the browser and the driver (killing what does not close in time)."""
        self._closed = True
        tasks = [*self._pending, *([self._launching] if self._launching is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._discard()

    # --- internals ------------------------------------------------------------------------------

    async def _ready(self, launch_timeout: float) -> Browser:
        """The running browser, launched (or restarted) if need be. The launch is a task of its
        own, shared by the runs waiting for it: a run cancelled meanwhile never aborts it."""
        if self._closed:
            raise BrowserUnavailable("the browser pool is closed (the agent is stopping or reloading)")
        if self._browser is not None and self.alive():
            return self._browser
        if self._launching is None or self._launching.done():
            self._launching = asyncio.create_task(self._restart(launch_timeout), name="browser-launch")
            self._launching.add_done_callback(_retrieve)  # its error is each waiting run's, if any is left
        return await asyncio.shield(self._launching)

    async def _restart(self, launch_timeout: float) -> Browser:
        if self._launches:
            self.restarts += 1
            why = "hung" if self._hung else "crashed, was killed or did not start"
            log.warning("browser: Chromium (pid %s) %s; restarting it (restart %d)", self._pid, why, self.restarts)
        await self._discard()
        return await self._launch(launch_timeout)

    async def _launch(self, timeout: float) -> Browser:
        self._launches += 1
        executable = find_executable(self.settings.executable)
        if executable is None:
            raise BrowserUnavailable(" ".join(install_problems(self.settings.executable)))
        from playwright.async_api import async_playwright  # heavy: only when a browser check runs

        self._marker = f"--firstwatch-browser={secrets.token_hex(8)}"  # finds our process in /proc
        flags = [*_FLAGS, self._marker]
        if os.geteuid() == 0:  # Chromium refuses to run as root with its sandbox
            flags.append("--no-sandbox")
        try:
            async with asyncio.timeout(timeout):
                self._driver = await async_playwright().start()
                self._browser = await self._driver.chromium.launch(
                    executable_path=executable,
                    args=flags,
                    headless=True,
                    timeout=timeout * 1000,
                    handle_sigint=False,  # the agent decides when the browser stops
                    handle_sigterm=False,
                    handle_sighup=False,
                )
        except Exception as exc:
            await self._discard()
            what = "timed out" if isinstance(exc, TimeoutError) else first_line(exc)
            raise BrowserUnavailable(f"cannot start the browser {executable}: {what}") from None
        self._pid = _find_pid(self._marker)
        log.info("browser: started %s (pid %s, version %s)", executable, self._pid, self._browser.version)
        return self._browser

    async def _new_context(self, browser: Browser, timeout: float) -> BrowserContext:
        try:
            async with asyncio.timeout(timeout):
                return await browser.new_context(
                    accept_downloads=False, service_workers="block", viewport={"width": 1280, "height": 800}
                )
        except TimeoutError:
            self._hung = True  # the next run kills it and starts another
            raise BrowserUnavailable(
                f"the browser did not open a context within {format_duration(timeout)} (hung):"
                " it is restarted on the next run"
            ) from None
        except Exception as exc:  # it died since it was last seen alive
            raise BrowserUnavailable(f"the browser failed: {first_line(exc)}") from None

    def _orphan(self, task: asyncio.Task[BrowserContext]) -> None:
        """A context opened for a run that was cancelled meanwhile: close it."""
        self._pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            return
        closing = asyncio.create_task(self._close_context(task.result()))
        self._pending.add(closing)
        closing.add_done_callback(self._pending.discard)

    async def _close_context(self, ctx: BrowserContext) -> None:
        if not self.alive():
            return  # a dead browser took its contexts with it; a hung one is killed on the next run
        closing = asyncio.ensure_future(ctx.close())
        closing.add_done_callback(_retrieve)  # its error, should nobody be left to hear it
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(closing)  # a second cancellation (the agent stopping) lets it finish
        except TimeoutError:
            self._hung = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the browser died meanwhile: nothing left to close
            log.debug("browser: closing a context failed: %s", exc)

    async def _discard(self) -> None:
        """Close the current browser and driver, if any; kill the browser's process group."""
        browser, driver, hung = self._browser, self._driver, self._hung
        pid = self._pid or (_find_pid(self._marker) if self._marker else None)  # a launch that failed
        self._browser, self._driver, self._pid, self._hung = None, None, None, False
        if browser is not None and browser.is_connected() and not hung:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await browser.close()
        if pid is not None:
            _kill_group(pid, self._marker)
        if driver is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await driver.stop()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def first_line(exc: BaseException) -> str:
    """The first line of a Playwright error (they go on with a call log), without its API prefix."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    head, sep, rest = text.partition(": ")
    return rest if sep and "." in head and " " not in head else text  # "Page.goto: net::ERR_..." -> "net::ERR_..."


def _is_browser(pid: int | str, marker: str) -> bool:
    """Whether process ``pid`` is the browser launched with ``marker`` among its flags; its
    helper processes (``--type=renderer`` ...; Chromium rewrites their command lines as one
    string) never carry it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    return marker.encode() in cmdline and b"--type=" not in cmdline


def _find_pid(marker: str) -> int | None:
    """The browser process launched with ``marker`` (Linux: /proc; None elsewhere)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    return next((int(e) for e in entries if e.isdigit() and _is_browser(e, marker)), None)


def _kill_group(pid: int, marker: str) -> None:
    """SIGKILL the browser and its helpers (Playwright starts it in a process group of its own),
    if it still runs: a pid is checked to be ours first, never reused by another process."""
    if not _is_browser(pid, marker):
        return
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
