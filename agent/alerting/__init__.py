"""Judging results: alert policy, rules, the state machine, flapping, blast radius, the book.

``policy`` holds the alerting keys of a check (``alerts``, ``impact``, ``flapping``,
``depends_on``, ``runbook``) as config models; ``rules`` compiles ``when:`` and judges one
result; ``state`` is the pure ``for:`` / ``recover_for:`` state machine; ``flapping`` the
Nagios-style detector; ``impact`` a group's severity from its share failing; ``quiet`` the
silence record and what keeps a check from paging; ``windows`` maintenance windows (cron in a
time zone); ``slo`` the ``slo`` key, error-budget arithmetic and the burn-alert judgement;
``holds`` why a firing is held (a failing parent, quiet time) and the book's part that holds and
releases them; ``records`` the book's plain data (``Alert``, ``Change``); ``book``
(:class:`AlertBook`) turns results into incidents and the changes worth recording.

May import: ``agent.core`` and ``checks`` (results and value declarations). Nothing above it:
the book sees checks through the small :class:`agent.alerting.book.Watched` protocol, not the
config loader.
"""
