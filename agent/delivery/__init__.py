"""Getting events out: the durable outbox, the per-sink delivery workers, and the sinks.

``outbox`` commits every event once per interested sink (routing: severity, kinds, checks,
``delay``) before any sink sees it; ``dispatch`` runs one worker per sink, in order, at least
once, with backoff; ``sinks/`` holds one module per sink type and the ``SINKS`` registry.

May import: ``agent.core``, ``agent.incidents`` (the store the outbox lives in) and
``agent.telemetry`` (the OTLP sink shares its exporters and ``OTEL_*`` handling).
"""
