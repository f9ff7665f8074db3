"""Whole-agent stories: the shipped CLI and daemon as real processes, across every room."""
