"""Metrics about what the agent sees and about itself: OpenTelemetry over OTLP, Prometheus text,
CloudWatch EMF.

``config`` (the ``telemetry:`` models), ``env`` (the standard ``OTEL_*`` variables and resource
attributes), ``series`` (our own series store and the Prometheus text format), ``values`` (which
metric each check value becomes), ``metrics`` (:class:`Telemetry`, what the daemon calls),
``otlp`` (the push thread, using only the OTLP exporters and data model), ``cloudwatch`` (EMF).

May import: ``agent.core`` and ``checks`` (result and value declarations). OpenTelemetry is
imported only when an exporter is built, never at config load.
"""
