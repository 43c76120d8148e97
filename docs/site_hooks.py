"""mkdocs hooks for netlab's documentation site (``mkdocs.yml``: ``hooks:``).

- The repository's README.md and benchmarks/README.md become pages of the site (``guide.md``,
  ``benchmarks.md``) and the API reference gets one page per module of :data:`REFERENCE`
  (rendered by mkdocstrings from the docstrings). A module this checkout lacks is left out, so
  the list may name modules that land later.
- Links between those files are written for GitHub (``docs/experiments.md``,
  ``../README.md``); they are rewritten to the site's pages. A link to another file of the
  repository (a script, a test) becomes its path as text; a link to a file that does not exist
  is left alone, so the strict build fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent

# repository files that are pages of the site: path in the repository -> path in the site
PAGES = {"README.md": "guide.md", "benchmarks/README.md": "benchmarks.md"}

# (module, what it is); the order of the reference pages
REFERENCE = (
    ("netlab.api", "the public Python API: bring a lab up, use it, tear it down"),
    ("netlab.testing", "the pytest plugin: fixtures and markers for your own datapath tests"),
    ("netlab.testing.plugin", "the plugin's fixtures, options and reports on failure"),
    ("netlab.model", "the validated, immutable topology"),
    ("netlab.lab", "the lifecycle engine: up, the journaled apply loop, phases, down, clean"),
    ("netlab.build", "building a topology with the phases it needs"),
    ("netlab.plan", "kernel operations that render themselves as ip/iptables commands"),
    ("netlab.observe.capture", "packet capture in any namespace"),
    ("netlab.observe.trace", "a probe traced hop by hop"),
    ("netlab.observe.check", "the reachability matrix of netlab check"),
    ("netlab.observe.expect", "expectations on captured packets"),
    ("netlab.scenario.spec", "scenario files: schema and loading"),
    ("netlab.scenario.runner", "netlab run: build, run the steps, tear down"),
    ("netlab.scenario.results", "what a run produces"),
    ("netlab.scenario.cases", "a run as CI counts it: one case per step and lab"),
    ("netlab.scenario.junit", "netlab run --junit FILE"),
    ("netlab.scenario.github_actions", "GitHub Actions annotations and groups"),
    ("netlab.services", "Services on a running lab: kube-proxy, DNS, workloads, manifests"),
    ("netlab.services.cluster", "the phase that starts a lab's Services, and sync when anything changes"),
    ("netlab.services.manifests", "Kubernetes manifests: apply and delete"),
    ("netlab.errors", "the one exception tree and its exit codes"),
)
_LINK = re.compile(r"(?<!!)\[([^\[\]]*)\]\(([^)\s#]+)(#[^)\s]*)?\)")
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\(([^)\s]+)\)")


def present(module: str) -> bool:
    """Whether this checkout has the module (looked up as a file: nothing is imported)."""
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def modules() -> list[tuple[str, str]]:
    """The modules of :data:`REFERENCE` this checkout has."""
    return [(name, what) for name, what in REFERENCE if present(name)]


def on_config(config: Any, **_: Any) -> Any:
    """The nav's ``API reference`` entry becomes its index and a page per module."""
    pages = [{"Overview": "reference/index.md"}] + [{name: f"reference/{name}.md"} for name, _what in modules()]
    config["nav"] = [{"API reference": pages} if isinstance(item, dict) and "API reference" in item else item for item in config["nav"] or []]
    return config


def on_files(files: Files, config: Any, **_: Any) -> Files:
    for source, page in PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / source)))
    listed = modules()
    index = ["# API reference", "", "Generated from the docstrings of this checkout.", ""]
    index += [f"- [`{name}`]({name}.md): {what}" for name, what in listed]
    files.append(File.generated(config, "reference/index.md", content="\n".join(index) + "\n"))
    for name, what in listed:
        page = f"# `{name}`\n\n{what[:1].upper() + what[1:]}.\n\n::: {name}\n"
        files.append(File.generated(config, f"reference/{name}.md", content=page))
    return files


def _repo_path(page: Page) -> str:
    """Where a page's Markdown lives in the repository."""
    site = page.file.src_uri
    return next((repo for repo, mapped in PAGES.items() if mapped == site), f"docs/{site}")


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    here = posixpath.dirname(_repo_path(page))
    site_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        text, target, anchor = match.group(1), match.group(2), match.group(3) or ""
        if "://" in target or target.startswith(("mailto:", "/")):
            return match.group(0)
        repo = posixpath.normpath(posixpath.join(here, target))
        mapped = PAGES.get(repo) or (repo.removeprefix("docs/") if repo.startswith("docs/") and repo.endswith(".md") else None)
        if mapped is not None:
            return f"[{text}]({posixpath.relpath(mapped, site_dir or '.')}{anchor})"
        if not repo.startswith("../") and (ROOT / repo).exists():
            return f"{text} (`{repo}` in the repository)"
        return match.group(0)

    def picture(match: re.Match[str]) -> str:
        alt, target = match.group(1), match.group(2)
        repo = posixpath.normpath(posixpath.join(here, target))
        if "://" in target or not repo.startswith("docs/") or not (ROOT / repo).is_file():
            return match.group(0)
        return f"![{alt}]({posixpath.relpath(repo.removeprefix('docs/'), site_dir or '.')})"

    return _IMAGE.sub(picture, _LINK.sub(rewrite, markdown))


# Sphinx roles in docstrings (:class:`~netlab.errors.UsageError`, :func:`apply`) arrive in the
# rendered page as ":class:<code>...</code>". Each page marks them with the names they may mean
# (as written, or relative to the page's module); once every page is written, each becomes a link
# to the object where the site documents it, or plain code where it does not.
_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj):<code>(~?)([\w.]+)</code>")
_MARK = re.compile(r'<code data-netlab-ref="([\w. ]*)">([^<]*)</code>')


def on_page_content(html: str, page: Page, **_: Any) -> str:
    module = page.file.src_uri.removeprefix("reference/").removesuffix(".md") if page.file.src_uri.startswith("reference/") else ""
    ids = set(re.findall(r'id="([\w.]+)"', html))

    def mark(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        shown = target.rsplit(".", 1)[-1] if short else target
        names = [f"{module}{target}"] if module and target.startswith(".") else [target] + ([f"{module}.{target}"] if module else [])
        names += sorted(i for i in ids if i.endswith(f".{target}"))  # a method named from its class
        return f'<code data-netlab-ref="{" ".join(names)}">{shown}</code>'

    return _ROLE.sub(mark, html)


def on_post_build(config: Any, **_: Any) -> None:
    site = Path(config["site_dir"])
    pages = list(site.rglob("*.html"))
    where: dict[str, Path] = {}
    for page in pages:
        for ident in re.findall(r'id="([\w.]+)"', page.read_text()):
            where.setdefault(ident, page)
    for page in pages:
        html = page.read_text()
        if "data-netlab-ref" not in html:
            continue

        def link(match: re.Match[str], page: Path = page) -> str:
            code = f"<code>{match.group(2)}</code>"
            found = next((name for name in match.group(1).split() if name in where), None)
            if found is None:
                return code
            target = where[found]
            href = "" if target == page else posixpath.relpath(target.parent, page.parent) + "/"
            return f'<a href="{href}#{found}">{code}</a>'

        page.write_text(_MARK.sub(link, html))
