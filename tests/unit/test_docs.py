"""The documentation site (mkdocs.yml): the guides and the API reference generated from
docstrings build offline with no warning, and load nothing from the network."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import mkdocstrings  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs and mkdocstrings are netlab's test tools: scripts/setup.sh installs them (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build --strict failed (a docstring or a link that does not render):\n{log}"
    assert "WARNING" not in log, log
    return out


def test_every_reference_module_has_a_page_with_its_docstrings(site: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import site_hooks
    finally:
        sys.path.remove(str(ROOT / "docs"))
    listed = site_hooks.modules()
    assert {"netlab.lab", "netlab.plan", "netlab.build", "netlab.scenario.junit", "netlab.observe.capture"} <= {m for m, _ in listed}
    for module, _what in listed:
        page = (site / "reference" / module / "index.html").read_text()
        assert f'id="{module}"' in page, f"{module}: mkdocstrings rendered no object"
    junit = (site / "reference" / "netlab.scenario.junit" / "index.html").read_text()
    assert 'id="netlab.scenario.junit.render"' in junit and "junit-10.xsd" in junit


def test_the_readme_is_the_guide_and_its_links_point_into_the_site(site: Path) -> None:
    guide = (site / "guide" / "index.html").read_text()
    assert "A five-minute walkthrough" in guide
    hrefs = set(re.findall(r'href="([^"]+)"', guide))
    assert not {h for h in hrefs if "docs/experiments.md" in h or h.endswith("README.md")}, "GitHub paths rewritten to the site's pages"
    assert any(h.startswith("../experiments/") for h in hrefs)


def test_nothing_is_loaded_from_the_network(site: Path) -> None:
    for page in site.rglob("*.html"):
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text())
        assert remote == [], f"{page.relative_to(site)} loads {remote}"


def test_sphinx_roles_become_code_and_their_links_resolve(site: Path) -> None:
    for page in (site / "reference").glob("*/index.html"):
        html = page.read_text()
        assert not re.search(r":(?:mod|class|func|meth|attr|data):<code>", html), f"{page.parent.name}: a role left as text"
        for href in re.findall(r'<a href="([^"]*)"><code>', html):
            path, _, anchor = href.partition("#")
            target = (page.parent / path / "index.html").resolve() if path else page
            assert target.is_file(), f"{page.parent.name}: {href} points to no page"
            if anchor:
                assert f'id="{anchor}"' in target.read_text(), f"{page.parent.name}: {href} points to no object"
