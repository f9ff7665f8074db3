"""The agent's memory of incidents: the SQLite store, its writer thread, the post-mortem report.

``store`` owns the schema (timeline, incidents, alert state, outbox rows, meta), opening,
checking and setting aside a damaged file, and the per-state-directory lock; ``writer`` is the
daemon's only way to it (one thread, a journal retried while the disk is full or the file
locked); ``report`` renders an incident and its timeline as a post-mortem draft.

May import: ``agent.core`` and ``agent.alerting`` (the silence record,
``agent.alerting.quiet.Silence``). The CLI reads the store directly (local authority is the file's
permission); the daemon goes through the writer.
"""
