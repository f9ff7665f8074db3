"""Tests of agent.web: the HTTP API, its limits under load, the status page, the status client."""
