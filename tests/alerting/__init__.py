"""Tests of agent.alerting: rules, the state machine, groups and flapping, the alert book."""
