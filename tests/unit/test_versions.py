"""netlab/versions.py is the one source of the versions netlab emulates: the README's table is
generated from it, and no module, doc or golden file claims another release of a component."""

from __future__ import annotations

import re
from pathlib import Path

from netlab import versions

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- begin: netlab/versions.py readme_table() -->\n"
END = "<!-- end: netlab/versions.py readme_table() -->"


def sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "netlab").rglob("*.py"))
    files += sorted(p for p in (ROOT / "tests").rglob("*") if p.is_file() and (p.suffix == ".py" or "golden" in p.parts))
    return files


def test_readme_table_is_generated_from_versions_py() -> None:
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme, "README.md lost the markers around the 'What netlab emulates' table"
    table = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert table == versions.readme_table(), "README's table drifted from netlab/versions.py: paste readme_table() between the markers"


def test_no_file_claims_another_release_of_a_pinned_component() -> None:
    wrong = []
    for path in sources():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        for c in versions.COMPONENTS:
            for m in re.finditer(c.claim, text):
                if not c.version.startswith(m.group(1)) and not _history(text, m):
                    line = text.count("\n", 0, m.start()) + 1
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)!r} (netlab emulates {c.name} {c.version})")
    assert not wrong, "\n".join(wrong)


def _history(text: str, m: re.Match[str]) -> bool:
    """'since v1.28', 'v1.29+', 'before v1.34', 'v1.34's PR': a statement about another
    release, not a claim that netlab emulates it."""
    before = text[max(0, m.start(1) - 12) : m.start(1)].lower()
    after = text[m.end(1) : m.end(1) + 6]
    return any(w in before for w in ("since ", "before ", "after ", "until ", "from ")) or after.startswith(("+", "'s PR "))


def test_every_component_has_a_version_a_source_and_both_columns() -> None:
    for c in versions.COMPONENTS:
        assert c.version and c.source and c.modelled and c.not_modelled and c.claim, c.name
        assert "|" not in c.modelled + c.not_modelled + c.source, f"{c.name}: a '|' would break the README table"
    assert versions.component("CoreDNS").version == "v1.12.0"
