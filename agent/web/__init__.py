"""What people and tools see of a running agent over HTTP, and the client that asks it.

``api`` serves ``/healthz``, ``/status``, ``/metrics`` and the status page, read-only, with a
connection cap and timeouts; ``snapshot`` types the status document; ``view`` reads it for people
(accessors, order, headline, formats); ``page`` renders it as HTML (its pictures, inline SVG, in
``charts``) and ``text`` as the tables of ``firstwatch status``; ``client`` is ``firstwatch
status``'s side: one deadline, and it makes sure the agent that answers is the one of this config;
``slos`` is ``firstwatch slo`` (the same asking, the document's SLOs as a table or JSON).

May import: ``agent.core``, ``agent.alerting`` (``slo.span``, how SLO windows are written),
``agent.config`` and ``checks``. The daemon (``agent.engine``) hands the server a source of
snapshots; nothing here reaches into the engine.
"""
