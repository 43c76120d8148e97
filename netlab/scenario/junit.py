"""``netlab run --junit FILE``: a run as JUnit XML, the test report CI systems read.

GitHub (through report actions), GitLab (``artifacts:reports:junit``) and Jenkins (the JUnit
and xUnit plugins) read the Ant/Surefire format. What is written here stays inside the strict
schema Jenkins' xUnit plugin validates against
(jenkinsci/xunit-plugin, src/main/resources/org/jenkinsci/plugins/xunit/types/model/xsd/junit-10.xsd):

- ``<testsuites name tests failures errors time>`` holding one ``<testsuite>`` per scenario run,
  with the required ``name tests failures errors`` and ``skipped time timestamp hostname``;
- its ``<properties>``: the conditions of the run (kernel, CPU, cores, emulated VM);
- one ``<testcase name classname time>`` per :class:`~netlab.scenario.cases.Case`, holding
  ``<failure message type>`` (an expectation or assertion failed), ``<error message type>``
  (the step could not run), or ``<skipped message>``, and ``<system-out>`` with what
  ``netlab run`` printed about it. No ``file``/``line`` attributes on a testcase: that schema
  has none (pytest leaves them out of its default ``xunit2`` family for the same reason); the
  scenario file and line are in the failure text instead.

Written with the standard library's :mod:`xml.etree.ElementTree`, which escapes markup; text
that XML 1.0 cannot carry at all (control characters from a captured payload) is replaced.
"""

from __future__ import annotations

import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netlab.scenario.cases import Case, counts

# characters XML 1.0 allows (https://www.w3.org/TR/xml/#charsets); anything else is replaced
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PROPERTIES = ("kernel", "cpu", "cores", "emulated_vm")


def _text(value: Any) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def to_element(cases: Sequence[Case], scenario: str, source: str, started: float, duration: float, conditions: dict[str, Any]) -> ET.Element:
    """The ``<testsuites>`` element of one run (``started``: epoch seconds; ``duration``: seconds)."""
    n = counts(cases)
    suites = ET.Element("testsuites", {
        "name": "netlab run", "tests": str(len(cases)), "failures": str(n["fail"]), "errors": str(n["error"]), "time": _seconds(duration),
    })
    suite = ET.SubElement(suites, "testsuite", {
        "name": _text(scenario), "tests": str(len(cases)), "failures": str(n["fail"]), "errors": str(n["error"]),
        "skipped": str(n["skipped"]), "time": _seconds(duration),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)), "hostname": _text(socket.gethostname()),
    })
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "source", "value": _text(source)})
    for key in _PROPERTIES:
        if key in conditions:
            ET.SubElement(props, "property", {"name": key, "value": _text(conditions[key])})
    for case in cases:
        element = ET.SubElement(suite, "testcase", {"name": _text(case.name), "classname": _text(case.classname), "time": _seconds(case.seconds)})
        where = f"{source}:{case.line}" if case.line else source
        if case.status == "fail":
            ET.SubElement(element, "failure", {"message": _text(case.message), "type": "ExpectationFailed"}).text = _text(f"{where}\n{case.text}")
        elif case.status == "error":
            ET.SubElement(element, "error", {"message": _text(case.message), "type": "NetlabError"}).text = _text(f"{where}\n{case.text}")
        elif case.status == "skipped":
            ET.SubElement(element, "skipped", {"message": _text(case.message)})
        if case.text:
            ET.SubElement(element, "system-out").text = _text(case.text)
    ET.indent(suites)
    return suites


def render(cases: Sequence[Case], scenario: str, source: str, started: float, duration: float, conditions: dict[str, Any]) -> bytes:
    """The JUnit XML document, UTF-8, with its declaration."""
    return ET.tostring(to_element(cases, scenario, source, started, duration, conditions), encoding="utf-8", xml_declaration=True) + b"\n"


def write(path: str | Path, document: bytes) -> None:
    """Write the document to ``path`` (its folder is created), replacing what was there at once."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(document)
    partial.replace(target)
