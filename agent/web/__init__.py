"""What people and tools see of a running agent over HTTP, and the client that asks it.

``api`` serves ``/healthz``, ``/status``, ``/metrics`` and the status page, read-only, with a
connection cap and timeouts; ``page`` renders the status snapshot as HTML (and as text for
``firstwatch status``); ``snapshot`` types that document; ``client`` is ``firstwatch status``'s
side: one deadline, and it makes sure the agent that answers is the one of this config.

May import: ``agent.core``, ``agent.config`` and ``checks``. The daemon (``agent.engine``) hands
the server a source of snapshots; nothing here reaches into the engine.
"""
