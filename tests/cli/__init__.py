"""Tests of agent.cli: log rate limiting, ``firstwatch check`` judging groups."""
