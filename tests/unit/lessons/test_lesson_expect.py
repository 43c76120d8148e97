"""Comparing a command's real output with a lesson's: placeholders, '...', spacing, exit codes."""

from __future__ import annotations

import pytest

from netlab.lessons import expect

PING = """PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.
64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=<ms> ms

--- 10.0.0.2 ping statistics ---
1 packets transmitted, 1 received, 0% packet loss, time <n>ms
rtt min/avg/max/mdev = <ms>/<ms>/<ms>/<ms> ms
""".splitlines()

REAL_PING = """PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.
64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.071 ms

--- 10.0.0.2 ping statistics ---
1 packets transmitted, 1 received, 0% packet loss, time 0ms
rtt min/avg/max/mdev = 0.071/0.071/0.071/0.000 ms
"""


def test_placeholders_match_what_varies() -> None:
    assert expect.mismatch(PING, REAL_PING, 0) is None


def test_a_changed_value_fails_with_a_diff() -> None:
    problem = expect.mismatch(PING, REAL_PING.replace("ttl=64", "ttl=63"), 0)
    assert problem is not None
    assert "-64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=<ms> ms" in problem
    assert "+64 bytes from 10.0.0.2: icmp_seq=1 ttl=63 time=0.071 ms" in problem


@pytest.mark.parametrize(("placeholder", "good", "bad"), [
    ("<ms>", "0.071", "fast"),
    ("<n>", "42", "4.2"),
    ("<port>", "54321", "x"),
    ("<mac>", "02:42:ac:11:00:02", "02:42:ac:11:00"),
    ("<hex>", "6b18bc4", "zz"),
    ("<time>", "07:31:02.123456", "7h"),
    ("<ip>", "10.96.0.10", "10.96.0"),
])
def test_each_placeholder(placeholder: str, good: str, bad: str) -> None:
    assert expect.mismatch([f"x {placeholder} y"], f"x {good} y", 0) is None
    assert expect.mismatch([f"x {placeholder} y"], f"x {bad} y", 0) is not None


def test_other_angle_brackets_are_literal() -> None:
    assert expect.mismatch(["netlab exec docker0 <target> -- ping"], "netlab exec docker0 <target> -- ping", 0) is None
    assert expect.mismatch(["netlab exec docker0 <target> -- ping"], "netlab exec docker0 web -- ping", 0) is not None


def test_ellipsis_stands_for_any_lines_even_none() -> None:
    want = ["first", "...", "last"]
    assert expect.mismatch(want, "first\na\nb\nlast", 0) is None
    assert expect.mismatch(want, "first\nlast", 0) is None
    assert expect.mismatch(want, "first\na\nnot last", 0) is not None
    assert expect.mismatch(["..."], "", 0) is None


def test_missing_and_extra_lines_fail() -> None:
    assert expect.mismatch(["a", "b"], "a", 0) is not None
    assert expect.mismatch(["a"], "a\nb", 0) is not None


def test_spacing_and_table_borders_do_not_matter() -> None:
    want = ["┏━━━━━┳━━━┓", "┃ a   ┃ b ┃", ""]
    assert expect.mismatch(want, "┏━━━━━━━━┳━━━┓   \n\n┃ a      ┃ b ┃\n", 0) is None
    assert expect.mismatch(want, "┏━━━━━━━━┳━━━┓\n┃ a      ┃ c ┃\n", 0) is not None


def test_exit_codes() -> None:
    assert expect.mismatch(["oops", "[exit 1]"], "oops", 1) is None
    assert "exit code 0, the lesson shows 1" in (expect.mismatch(["oops", "[exit 1]"], "oops", 0) or "")
    assert "exit code 2, the lesson shows 0" in (expect.mismatch(["oops"], "oops", 2) or "")
