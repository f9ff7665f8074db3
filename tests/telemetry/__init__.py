"""Tests of agent.telemetry: OTLP metrics, the OTEL_* environment, Prometheus text, CloudWatch EMF."""
