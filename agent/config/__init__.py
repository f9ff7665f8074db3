"""Reading the configuration: YAML with positions, validation, every error at its line.

``yaml_source`` loads YAML safely and boundedly, keeping each key's line and column and expanding
``${VAR}``; ``load`` validates the whole file at once into an :class:`AgentConfig` (each check's
keys and its alerting policy, each sink, telemetry); ``messages`` turns validation errors into
``FILE:LINE:COL: path: message`` with "did you mean"; ``settings`` reads ``agent.listen`` and
other keys on their own, leniently; ``prometheus_rules`` turns the checks' rules into Prometheus
rule groups (``firstwatch rules``).

May import: ``agent.core``, ``agent.alerting`` (the alerting keys and rule compiler),
``agent.delivery.sinks`` (the sink registry and models), ``agent.telemetry.config``,
``agent.telemetry.values`` and ``agent.telemetry.series`` (the exported metric names) and
``checks`` (the check registry and models).
"""
