"""Tests of agent.delivery: the outbox, the delivery workers and every sink type."""
