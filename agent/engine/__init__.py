"""Running it all: the daemon, the runtime that wires one config, the scheduler, the probe runner.

``daemon`` is the process (signals, reload, systemd notify and watchdog, the state lock, the
HTTP server); ``runtime`` connects probes, the alert book, the store writer, the outbox and the
sinks for one loaded config (wiring only); ``scheduler`` keeps every (check, target) on its
phase; ``probe_runner`` owns deadlines and crash capture; ``recorder`` writes what the book
decides into the store; ``quiet_time`` joins the config's maintenance windows with the
silences read from the store; ``snapshot`` builds the status document; ``oneshot`` is
``firstwatch check``'s engine; ``systemd`` speaks ``sd_notify``.

May import: every room below it (``core``, ``alerting``, ``incidents``, ``telemetry``,
``delivery``, ``config``, ``web``) and ``checks``. Only ``agent.cli.main`` imports this room.
"""
