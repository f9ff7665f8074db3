"""The ``firstwatch`` command line: the parser and one module per command family.

``main`` parses and dispatches (``run`` goes to the engine's daemon, ``check`` to the one-shot
engine, ``validate`` and ``list-checks`` to the config loader and the registry); ``incidents``
is ``timeline``, ``note``, ``ack`` and ``report`` (on the store directly: local authority);
``output`` renders ``check`` results as text, JSON or a Nagios plugin line; ``docs`` prints a
check type's documentation. ``status`` lives in ``agent.web.client``.

May import: every room (it is the top). Each command imports only what it needs, so
``firstwatch check`` starts fast.
"""
