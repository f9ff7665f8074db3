"""Tests of agent.config: error messages, hostile YAML, lazy imports at load, the registries' examples."""
