"""What tests share, defined once: ``factories`` (events, config errors),
``agent`` (the shipped CLI and daemon as subprocesses) and ``peers/`` (real peers on loopback)."""
