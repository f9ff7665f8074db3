"""The ``firstwatch`` command line: the parser and one module per command family.

``main`` parses and dispatches (``run`` goes to the engine's daemon, ``check`` to the one-shot
engine, ``validate`` and ``list-checks`` to the config loader and the registry); ``incidents``
is ``timeline``, ``note``, ``ack`` and ``report`` (on the store directly: local authority);
``output`` renders ``check`` results as text, JSON or a Nagios plugin line; ``docs`` prints a
check type's documentation; ``ask`` parses and dispatches ``status`` and ``slo``, which ask the
running agent (they live in ``agent.web.client`` and ``agent.web.slos``).

May import: every room (it is the top). Each command imports only what it needs, so
``firstwatch check`` starts fast.
"""
