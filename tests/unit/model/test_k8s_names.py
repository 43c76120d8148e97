"""Kubernetes' name rules (netlab/model/k8s_names.py) against Kubernetes' own test tables.

The good and bad values are those of k8s.io/apimachinery/pkg/util/validation/validation_test.go
(TestIsDNS1123Label, TestIsDNS1123Subdomain, TestIsDNS1035Label, TestIsValidPortName,
TestIsQualifiedName, TestIsValidLabelValue), plus what issue 11 found: values with a newline
at the end, which ``re.match(r"^...$")`` let through.
"""

from __future__ import annotations

import pytest

from netlab.model import k8s_names as k8s

HOSTILE = ["web\n", "web\r", "we\x00b", 'x"y', "a b", "a;b", "$(id)", "`id`", "w\u00e9b", "../x", "[/]x", "web\n\n"]


def good(rule: k8s.Rule, values: list[str]) -> None:
    for value in values:
        assert rule(value) == [], value


def bad(rule: k8s.Rule, values: list[object]) -> None:
    for value in values:
        assert rule(value) != [], value


def test_dns1123_label() -> None:
    good(k8s.is_dns1123_label, ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a" * 63])
    bad(k8s.is_dns1123_label, [
        "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1", "1_2",
        ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a", "a b", "1 ", " 1", "1 2", "a" * 64, *HOSTILE, None, 1,
    ])


def test_dns1123_subdomain() -> None:
    good(k8s.is_dns1123_subdomain, [
        "a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2",
        "a.a", "ab.a", "abc.a", "a1.a", "a-1.a", "a--1--2--b.a", "a.1", "ab.1", "abc.1", "a1.1", "a-1.1", "a--1--2--b.1",
        "0.a", "01.a", "012.a", "1a.a", "1-a.a", "1--a--b--2", "0.1", "01.1", "012.1", "1a.1", "1-a.1", "1--a--b--2.1",
        "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55", "a" * 253,
    ])
    bad(k8s.is_dns1123_subdomain, [
        "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_", "_1", "1_2",
        ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a", "a b", "1 ", " 1", "1 2",
        "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1", "1A.1", "0.A", "01.A", "012.A", "1A.a", "1a.A",
        "A.B.C.D.E", "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee", "a@b", "a,b", "a_b", "a;b", "a:b", "a%b", "a?b", "a$b",
        "a" * 254, *HOSTILE,
    ])


def test_dns1035_label() -> None:
    good(k8s.is_dns1035_label, ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "a" * 63])
    bad(k8s.is_dns1035_label, [
        "0", "01", "012", "1a", "1-a", "1--a--b--2", "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1",
        "_", "a_", "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a", "a b",
        "1 ", " 1", "1 2", "a" * 64, *HOSTILE,
    ])


def test_port_name() -> None:
    good(k8s.is_valid_port_name, ["telnet", "re-mail-ck", "pop3", "a", "a-1", "1-a", "a-1-b-2-c", "1-a-2-b-3"])
    bad(k8s.is_valid_port_name, ["longerthan15characters", "", "12345", "1-2-3-4", "-begin", "end-", "two--hyphens", "1-2", "whois++", *HOSTILE])


def test_qualified_name() -> None:
    good(k8s.is_qualified_name, [
        "simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple",
        "now-with-dashes/now-with-dashes", "now.with.dots/simple", "now-with.dashes-and.dots/simple", "1-num.2-num/3-num",
        "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123", "example.com/Uppercase_Is_OK_123", "a" * 63,
        "a" * 253 + "/" + "b" * 63, "app.kubernetes.io/name", "k8s-app",
    ])
    bad(k8s.is_qualified_name, [
        "nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash", "Example.com/abc",
        "example_com/abc", "example.com/", "/simple", "a" * 64, "a" * 254 + "/abc", *HOSTILE,
    ])


def test_label_value() -> None:
    good(k8s.is_valid_label_value, ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, ""])
    bad(k8s.is_valid_label_value, [
        "nospecialchars%^=@", "Tama-nui-te-r\u0101.is.M\u0101ori.sun", "\\backslashes\\are\\bad", "-starts-with-dash",
        "ends-with-dash-", ".starts.with.dot", "ends.with.dot.", "a" * 64, *HOSTILE,
    ])


def test_external_name() -> None:
    good(k8s.is_external_name, ["example.com", "example.com.", "www.example.com", "a" * 63 + ".com"])
    bad(k8s.is_external_name, ["", ".", "a..b", "a" * 64 + ".com", "example.com..", *HOSTILE])


def test_messages_read_like_kubernetes() -> None:
    assert k8s.problem("namespace", "Prod", k8s.is_dns1123_label) == (
        "invalid namespace 'Prod': a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )
    assert k8s.problem("port name", "two--hyphens", k8s.is_valid_port_name) == "invalid port name 'two--hyphens': must not contain consecutive hyphens"
    assert "must be no more than 63 characters" in str(k8s.problem("namespace", "a" * 64, k8s.is_dns1123_label))
    assert k8s.problem("namespace", "ok", k8s.is_dns1123_label) is None
    with pytest.raises(ValueError, match="invalid label key"):
        k8s.require_labels("label", {"a b": "c"})


def test_a_trailing_newline_never_passes_any_name_rule_of_the_new_kinds() -> None:
    """``re.match('^...$')`` lets ``value\\n`` through (``$`` matches before a final newline):
    every rule of the Ingress, Gateway API, topology and ExternalDNS models uses fullmatch."""
    from pydantic import ValidationError

    from netlab.model.gateway import HTTPHeaderMatch, HTTPQueryParamMatch
    from netlab.model.ingress import ServiceBackendPort

    for build in (
        lambda: HTTPHeaderMatch(name="X-A\n", value="v"),
        lambda: HTTPHeaderMatch(name="X-A", value="v\n"),
        lambda: HTTPQueryParamMatch(name="q\n", value="v"),
        lambda: ServiceBackendPort(name="http\n"),
    ):
        with pytest.raises(ValidationError):
            build()
