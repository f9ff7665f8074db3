"""The bottom room: what every stage shares and nothing else.

The event and its fingerprint (``events``), severities (``severity``), units and human formats
(``units``), the error root (``errors``), validators shared by checks and sinks
(``validators``), escaping of untrusted text (``safe_text``) and the one subprocess runner
(``subprocesses``), the open-file limit (``fd_limit``), small SVG pictures (``svg``) and the
lazily imported registries of check and sink types (``registry``).

May import: the standard library and third-party libraries only; never another room of
``agent`` nor ``checks`` (every other room, and ``checks``, may import this one).
"""
