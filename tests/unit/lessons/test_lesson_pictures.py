"""The lessons' pictures: every lesson shows its lab, and each picture is still the lab its
topology file plans (regenerate with the command the lesson prints, ``netlab graph
topologies/X.yaml -o docs/lessons/img/X.svg``, when a plan or the drawing changes)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from netlab import plan as p
from netlab.datapaths import make_plan
from netlab.model import load_topology

ROOT = Path(__file__).resolve().parents[3]
LESSONS = ROOT / "docs" / "lessons"
SVG = "{http://www.w3.org/2000/svg}"
PICTURE = re.compile(r"!\[[^\]]*\]\((img/[\w.-]+\.svg)\)")


def pictures(page: Path) -> list[Path]:
    return [LESSONS / m for m in PICTURE.findall(page.read_text())]


def texts(picture: Path) -> set[str]:
    return {t.text or "" for t in ET.fromstring(picture.read_bytes()).iter(f"{SVG}text")}


def test_every_lesson_shows_its_lab_and_every_picture_exists() -> None:
    pages = sorted(LESSONS.glob("[0-9][0-9]-*.md"))
    assert pages, "no lessons found"
    for page in pages:
        shown = pictures(page)
        assert shown, f"{page.name} shows no picture of its lab"
        missing = [str(s.relative_to(ROOT)) for s in shown if not s.is_file()]
        assert not missing, f"{page.name} embeds pictures that do not exist: {missing}"


@pytest.mark.parametrize("picture", sorted({s for page in LESSONS.glob("[0-9][0-9]-*.md") for s in pictures(page)
                                            if (ROOT / "topologies" / s.name.replace(".svg", ".yaml")).is_file()}),
                         ids=lambda s: s.name)
def test_a_lab_picture_is_what_its_topology_plans(picture: Path) -> None:
    topology = ROOT / "topologies" / picture.name.replace(".svg", ".yaml")
    plan = make_plan(load_topology(topology), str(topology))
    seen = texts(picture)
    assert {f"netns {ns}" for ns in plan.namespaces} <= seen, f"{picture.name}: a namespace is missing; regenerate it"
    addresses = {op.address.with_prefixlen for op in plan.operations if isinstance(op, p.AddAddress)}
    assert addresses <= seen, f"{picture.name}: an address moved ({sorted(addresses - seen)}); regenerate it"
    ids = {g.get("id") for g in ET.fromstring(picture.read_bytes()).iter(f"{SVG}g")}
    veths = {f"port:{op.ns}/{op.name}" for op in plan.operations if isinstance(op, p.AddVeth)}
    assert veths <= ids, f"{picture.name}: an interface was renamed ({sorted(veths - ids)}); regenerate it"


def test_the_trace_picture_numbers_the_hops_of_the_lesson_trace() -> None:
    picture = LESSONS / "img" / "flannel-vxlan-trace.svg"
    seen = " ".join(texts(picture))
    assert "req 5: encapsulated VXLAN VNI 1 192.168.1.11->192.168.1.12" in seen
    assert "req 9: decapsulated VXLAN VNI 1" in seen and "rep 5: encapsulated VXLAN VNI 1 192.168.1.12->192.168.1.11" in seen
