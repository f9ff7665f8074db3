"""Tests of agent.engine: the scheduler, the probe runner, systemd notify."""
