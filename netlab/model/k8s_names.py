"""Kubernetes' rules for names, label keys and label values, as the API server applies them.

Pure and stdlib-only. Each ``is_*`` function returns the list of problems with ``value`` in
Kubernetes' own words (empty when the value is valid), like the functions of the same name in
Kubernetes' ``k8s.io/apimachinery/pkg/util/validation/validation.go``:

- :func:`is_dns1123_label` (``IsDNS1123Label``, at most 63): namespaces, Service port names,
  container names, a pod's ``hostname`` and ``subdomain``;
- :func:`is_dns1123_subdomain` (``IsDNS1123Subdomain``, at most 253): Deployment and Pod names
  (netlab's own pod rule is stricter), ``nodeName``; :func:`is_external_name` is the same with
  a trailing dot allowed, for ``externalName``;
- :func:`is_dns1035_label` (``IsDNS1035Label``, at most 63): Service names (and netlab's pod names);
- :func:`is_valid_port_name` (``IsValidPortName``, IANA_SVC_NAME, at most 15): container port
  names and a named ``targetPort``;
- :func:`is_qualified_name` (``IsQualifiedName``): label and selector keys;
- :func:`is_valid_label_value` (``IsValidLabelValue``, at most 63): label and selector values.

Where each rule applies is Kubernetes' too (``pkg/apis/core/validation``: a Service's name is
a DNS-1035 label, its ports' names DNS-1123 labels, a string ``targetPort`` an IANA service
name, ``externalName`` a DNS-1123 subdomain). Every pattern is matched against the whole
string (``re.fullmatch``: a trailing newline does not slip through), so a value that passes
holds nothing but ``[A-Za-z0-9._/-]``: it cannot end an iptables comment, start a new line
of an ``iptables-restore`` input or a ``resolv.conf``, or name a path outside a directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
PORT_NAME_MAX = 15
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = f"({_QUALIFIED_NAME})?"

Rule = Callable[[object], list[str]]


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    shown = " or ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{pattern}')"


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def is_dns1123_label(value: object) -> list[str]:
    text = _text(value)
    if text is None:
        return ["must be a string"]
    errors = [_max_len(DNS1123_LABEL_MAX)] if len(text) > DNS1123_LABEL_MAX else []
    if not re.fullmatch(_DNS1123_LABEL, text):
        errors.append(_regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character", _DNS1123_LABEL, "my-name", "123-abc",
        ))
    return errors


def is_dns1123_subdomain(value: object) -> list[str]:
    text = _text(value)
    if text is None:
        return ["must be a string"]
    errors = [_max_len(DNS1123_SUBDOMAIN_MAX)] if len(text) > DNS1123_SUBDOMAIN_MAX else []
    if not re.fullmatch(_DNS1123_SUBDOMAIN, text):
        errors.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character", _DNS1123_SUBDOMAIN, "example.com",
        ))
    return errors


def is_dns1035_label(value: object) -> list[str]:
    text = _text(value)
    if text is None:
        return ["must be a string"]
    errors = [_max_len(DNS1035_LABEL_MAX)] if len(text) > DNS1035_LABEL_MAX else []
    if not re.fullmatch(_DNS1035_LABEL, text):
        errors.append(_regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character", _DNS1035_LABEL, "my-name", "abc-123",
        ))
    return errors


def is_valid_port_name(value: object) -> list[str]:
    """IANA_SVC_NAME (RFC 6335): at most 15 of ``[-a-z0-9]``, a letter, no ``--``, no hyphen at either end."""
    text = _text(value)
    if text is None:
        return ["must be a string"]
    errors = [_max_len(PORT_NAME_MAX)] if len(text) > PORT_NAME_MAX else []
    if not re.fullmatch("[-a-z0-9]+", text):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", text):
        errors.append("must contain at least one letter (a-z)")
    if "--" in text:
        errors.append("must not contain consecutive hyphens")
    if text[:1] == "-" or text[-1:] == "-":
        errors.append("must not begin or end with a hyphen")
    return errors


def is_qualified_name(value: object) -> list[str]:
    """A label key: ``[prefix/]name``, the prefix a DNS-1123 subdomain, the name at most 63 characters."""
    text = _text(value)
    if text is None:
        return ["must be a string"]
    parts = text.split("/")
    if len(parts) > 2:
        return [_regex_error(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character", _QUALIFIED_NAME, "MyName", "my.name", "123-abc",
        ) + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errors: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += [f"prefix part {e}" for e in is_dns1123_subdomain(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errors.append(f"name part {_max_len(QUALIFIED_NAME_MAX)}")
    if not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            _QUALIFIED_NAME, "MyName", "my.name", "123-abc",
        ))
    return errors


def is_valid_label_value(value: object) -> list[str]:
    text = _text(value)
    if text is None:
        return ["must be a string"]
    errors = [_max_len(LABEL_VALUE_MAX)] if len(text) > LABEL_VALUE_MAX else []
    if not re.fullmatch(_LABEL_VALUE, text):
        errors.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character", _LABEL_VALUE, "MyValue", "my_value", "12345",
        ))
    return errors


def is_external_name(value: object) -> list[str]:
    """A Service's ``externalName``: a DNS-1123 subdomain, a trailing dot allowed (Kubernetes trims it).

    Stricter than Kubernetes in one way: each label has at most 63 characters, as a DNS name
    must (RFC 1035); the cluster DNS could not put a longer one in its CNAME answer.
    """
    text = _text(value)
    if text is None:
        return ["must be a string"]
    name = text[:-1] if text.endswith(".") else text
    errors = is_dns1123_subdomain(name)
    if any(len(label) > DNS1123_LABEL_MAX for label in name.split(".")):
        errors.append(f"each label (between dots) {_max_len(DNS1123_LABEL_MAX)}")
    return errors


def problem(what: str, value: object, rule: Rule) -> str | None:
    """``invalid <what> '<value>': <every problem>``, or None when ``value`` passes ``rule``."""
    errors = rule(value)
    if not errors:
        return None
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return f"invalid {what} {shown}: {'; '.join(errors)}"


def require(what: str, value: object, rule: Rule) -> str:
    """``value`` if it passes ``rule``; else a ValueError saying why (for pydantic validators)."""
    message = problem(what, value, rule)
    if message is not None:
        raise ValueError(message)
    return value  # type: ignore[return-value]  # rule() refused anything but a str


def require_labels(what: str, labels: dict[str, str]) -> dict[str, str]:
    """Every key a qualified name, every value a label value (labels, selectors, matchLabels)."""
    for key, value in labels.items():
        require(f"{what} key", key, is_qualified_name)
        require(f"{what} value (of {key})", value, is_valid_label_value)
    return labels
