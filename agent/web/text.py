"""The status snapshot as plain-text tables: what ``firstwatch status`` prints (the same reading
of the snapshot as the HTML page, through ``agent.web.view``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agent.web.view import (
    as_list,
    as_map,
    as_text,
    checks_by_state,
    counts_line,
    fmt_duration,
    fmt_time,
    headline,
    incidents_in_order,
    quiet_text,
    summary_of,
)


def table(headers: list[str], rows: Iterable[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, a header line first, no trailing spaces."""
    rows = [[c.replace("\n", " ") for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def render_text(snapshot: Mapping[str, object]) -> str:
    """The snapshot as plain-text tables: the headline, open incidents, then every member."""
    snapshot = as_map(snapshot)
    summary = summary_of(snapshot)
    agent = as_map(snapshot.get("agent"))
    _, head_text = headline(summary)
    lines = [f"{head_text}: {counts_line(summary)}  (agent {as_text(agent.get('name'), '?')})", ""]
    incidents = incidents_in_order(snapshot)
    if incidents:
        lines += table(
            ["SEVERITY", "INCIDENT", "STARTED", "ACKED BY", "SUMMARY"],
            (
                [
                    as_text(i.get("severity"), "?"),
                    as_text(i.get("id"), "?"),
                    fmt_time(i.get("started_at")),
                    as_text(i.get("acked_by"), "-"),
                    as_text(i.get("summary"))
                    + (
                        f" (also failing: {', '.join(map(as_text, as_list(i.get('affected'))))})"
                        if i.get("affected")
                        else ""
                    ),
                ]
                for i in incidents
            ),
        )
        lines.append("")
    rows = []
    for _state, _, checks in checks_by_state(snapshot):
        for c in checks:
            for m in (as_map(x) for x in as_list(c.get("members"))):
                up = m.get("up")
                firing = ", ".join(
                    [
                        f"{as_text(as_map(f).get('severity'))}: {as_text(as_map(f).get('rule'))}"
                        for f in as_list(m.get("firing"))
                    ]
                    + [
                        f"not paged ({as_text(as_map(h).get('why'))}): {as_text(as_map(h).get('rule'))}"
                        for h in as_list(m.get("held"))
                    ]
                )
                rows.append(
                    [
                        as_text(c.get("name"), "?"),
                        as_text(m.get("target") or "this host"),
                        "up" if up is True else "DOWN" if up is False else "-",
                        fmt_time(m.get("last_run")) if m.get("last_run") else "never",
                        fmt_duration(m.get("duration_s")),
                        "; ".join(x for x in (firing, as_text(m.get("error"))[:120]) if x),
                    ]
                )
    lines += table(["CHECK", "TARGET", "STATE", "LAST RUN", "DURATION", "FIRING / ERROR"], rows)
    quiet = [
        [as_text(c.get("name"), "?"), quiet_text(as_map(c.get("quiet")))]
        for c in (as_map(x) for x in as_list(snapshot.get("checks")))
        if c.get("quiet")
    ]
    if quiet:  # who is not paged now, until when, why and by whom
        lines += ["", *table(["QUIET CHECK", "WHY"], quiet)]
    return "\n".join(lines) + "\n"
