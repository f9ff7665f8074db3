"""The Nagios plugin output parser: real plugin lines, the long-output format, garbage, and
round trips of generated performance data through the formatter and the parser."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from checks.perfdata import (
    PerfValue,
    format_label,
    format_perfdata,
    parse_output,
    parse_perfdata,
    to_base_unit,
)


def test_check_load_line() -> None:
    out = parse_output(
        "LOAD OK - total load average: 0.22, 0.42, 0.29|load1=0.220;999.000;999.000;0; "
        "load5=0.420;999.000;999.000;0; load15=0.290;999.000;999.000;0; \n"
    )
    assert out.text == "LOAD OK - total load average: 0.22, 0.42, 0.29"
    assert out.long_text == ""
    assert out.perfdata == (
        PerfValue("load1", 0.22, "", "999.000", "999.000", 0.0, None),
        PerfValue("load5", 0.42, "", "999.000", "999.000", 0.0, None),
        PerfValue("load15", 0.29, "", "999.000", "999.000", 0.0, None),
    )


def test_check_tcp_and_check_disk_lines() -> None:
    tcp = parse_output("TCP OK - 0.000 second response time on 127.0.0.1 port 22|time=0.000115s;;;0.000000;10.000000\n")
    assert tcp.perfdata == (PerfValue("time", 0.000115, "s", None, None, 0.0, 10.0),)
    disk = parse_output(
        "DISK OK - free space: / 81410MiB (78% inode=97%);| /=23579328512B;267847005634;267847005634;0;270552530944"
    )
    assert disk.text == "DISK OK - free space: / 81410MiB (78% inode=97%);"
    assert disk.perfdata[0].base() == (23579328512.0, "bytes")


def test_long_output_with_perfdata_over_several_lines() -> None:
    out = parse_output(
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%);\n"
        "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414 \n"
        "'free space'=12%;;;0;100\r\n"
    )
    assert out.text == "DISK OK - free space: / 3326 MB (56%);"
    assert out.long_text == "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/var/log 819 MB (84%);"
    assert [(p.label, p.value, p.uom) for p in out.perfdata] == [
        ("/", 2643, "MB"),
        ("/boot", 68, "MB"),
        ("/home", 69357, "MB"),
        ("free space", 12, "%"),
    ]
    assert out.perfdata[3].max == 100


def test_quoted_labels_and_quotes_inside() -> None:
    items = parse_perfdata("'a b'=1 'it''s'=2s 'x=y'=3 'trailing '=4;1:5;@10:20;;")
    assert [(p.label, p.value) for p in items] == [("a b", 1), ("it's", 2), ("x=y", 3), ("trailing ", 4)]
    assert items[3].warn == "1:5" and items[3].crit == "@10:20"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("no perfdata here at all", []),
        ("load=U;1;2 ok=1", [("ok", 1.0)]),  # U: undetermined, left out
        ("=5 ''=6 a=7", [("a", 7.0)]),  # empty labels
        ("'unterminated b=1", [("b", 1.0)]),
        ("a=  b=2", [("b", 2.0)]),
        ("a=x b=-3.5e2 c=.5 d=1e999", [("b", -350.0), ("c", 0.5)]),  # inf is left out
        ("a=1;2;3;4;5;6;7 b=2", [("a", 1.0), ("b", 2.0)]),
        ("a=1 | b=2 |c=3", [("a", 1.0), ("b", 2.0), ("c", 3.0)]),
    ],
)
def test_garbage_is_skipped(text: str, expected: list[tuple[str, float]]) -> None:
    assert [(p.label, p.value) for p in parse_perfdata(text)] == expected


@pytest.mark.parametrize(
    ("value", "uom", "expected"),
    [
        (12.3, "ms", (0.0123, "s")),
        (250.0, "us", (0.00025, "s")),
        (1.5, "s", (1.5, "s")),
        (93.0, "%", (93.0, "%")),
        (2.0, "KB", (2000.0, "bytes")),
        (2.0, "MB", (2e6, "bytes")),
        (2.0, "GB", (2e9, "bytes")),
        (1.0, "TB", (1e12, "bytes")),
        (1.0, "MiB", (1048576.0, "bytes")),
        (7.0, "B", (7.0, "bytes")),
        (12.0, "c", (12.0, "1")),
        (4.0, "", (4.0, "1")),
        (21.5, "°C", (21.5, "1")),
    ],
)
def test_units_convert_to_firstwatch_base_units(value: float, uom: str, expected: tuple[float, str]) -> None:
    got = to_base_unit(value, uom)
    assert got[1] == expected[1]
    assert math.isclose(got[0], expected[0], rel_tol=1e-12)


def test_format_label_quotes_only_when_needed() -> None:
    assert format_label("load1") == "load1"
    assert format_label("/var/log") == "/var/log"
    assert format_label("free space") == "'free space'"
    assert format_label("it's") == "'it''s'"
    assert format_label("a|b") == "'a|b'"


# Round trips

_LABEL_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
labels = st.text(_LABEL_CHARS, min_size=1, max_size=20)
uoms = st.one_of(
    st.sampled_from(["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c", "°C", "KiB/s"]),
    st.from_regex(r"[a-df-zA-DF-Z%/][A-Za-z%/]{0,4}", fullmatch=True),  # no leading e: 1e5 is a number
)
ranges = st.one_of(st.none(), st.from_regex(r"@?(~|-?\d{1,4}(\.\d{1,2})?)?:?(-?\d{1,4})?", fullmatch=True))
numbers = st.floats(allow_nan=False, allow_infinity=False)
perf_values = st.builds(
    PerfValue,
    label=labels,
    value=numbers,
    uom=uoms,
    warn=ranges.map(lambda r: r or None),
    crit=ranges.map(lambda r: r or None),
    min=st.one_of(st.none(), numbers),
    max=st.one_of(st.none(), numbers),
)


@given(st.lists(perf_values, max_size=8))
@example([PerfValue("a b", 1.0), PerfValue("'", -0.0, "%", "~:5", None, None, 100.0)])
def test_perfdata_round_trips(items: list[PerfValue]) -> None:
    assert parse_perfdata(format_perfdata(items)) == items


@given(
    st.text(st.characters(blacklist_characters="|\n\r"), max_size=40),
    st.lists(perf_values, max_size=4),
    st.lists(st.text(st.characters(blacklist_characters="|\n\r"), min_size=1, max_size=30), max_size=3),
    st.lists(perf_values, max_size=4),
)
def test_whole_output_round_trips(
    text: str, first: list[PerfValue], long_lines: list[str], more: list[PerfValue]
) -> None:
    output = text + (" | " + format_perfdata(first) if first else "")
    if long_lines or more:
        output += "\n" + "\n".join(long_lines) + (" | " + format_perfdata(more[:2]) if more else "")
        output += "".join("\n" + format_perfdata([p]) for p in more[2:])
    out = parse_output(output + "\n")
    assert out.text == text.strip()
    assert out.perfdata == (*first, *more)


@given(st.text(max_size=300))
def test_garbage_never_raises(text: str) -> None:
    out = parse_output(text)
    assert "\n" not in out.text
    for p in out.perfdata:
        assert p.label and math.isfinite(p.value)
