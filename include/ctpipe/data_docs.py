"""The gate's Data Docs site: GX's own pages, at a cost that does not grow with history.

GX renders every page with a new Jinja environment, so each validation compiled
all of its templates again: most of the cost of building the run's pages. The
views below are GX's own with a Jinja bytecode cache in the GX project, so a
template is compiled once per project and later runs, in any process, load the
compiled code. Jinja keys the cache by the template's source, so a GX upgrade
that changes a template compiles it again.

``configure_site`` keeps a project's sites set up this way; it runs each time the
gate opens the project, and saves the project's configuration only when it changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import FileSystemBytecodeCache

# The Data Docs index lists the newest runs only. GX rebuilds the index on every run and reads
# every validation result it lists, so an index of all runs costs more with every day of
# history (about 3 ms per result here). Every run still gets its own page, built once and
# kept; the interval's JSON report links it (``data_docs_uri``).
DATA_DOCS_INDEX_RUNS = 30
# Where, under the GX project's root, the compiled templates are kept.
BYTECODE_DIRECTORY = Path("uncommitted") / "data_docs_templates"


class _CompiledOnce:
    """A GX Jinja view whose environment keeps compiled templates in ``bytecode_cache_directory``."""

    env: Any

    def __init__(
        self,
        bytecode_cache_directory: str,
        custom_styles_directory: str | None = None,
        custom_views_directory: str | None = None,
    ) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)  # type: ignore[call-arg]
        Path(bytecode_cache_directory).mkdir(parents=True, exist_ok=True)
        self.env.bytecode_cache = FileSystemBytecodeCache(bytecode_cache_directory)


class PageView(_CompiledOnce, DefaultJinjaPageView):
    """GX's page of one validation result or one suite."""


class IndexPageView(_CompiledOnce, DefaultJinjaIndexPageView):
    """GX's index page of the site."""


def _view(cls: type, cache: Path) -> dict[str, str]:
    return {"module_name": __name__, "class_name": cls.__name__, "bytecode_cache_directory": str(cache)}


def configure_site(site: dict[str, Any], project_root: Path) -> bool:
    """Set one Data Docs site's index limit, sections and views in place; whether anything changed."""
    cache = project_root / BYTECODE_DIRECTORY
    before = repr(site)
    index = site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
    index["validation_results_limit"] = DATA_DOCS_INDEX_RUNS
    index["view"] = _view(IndexPageView, cache)
    sections = site.setdefault("site_section_builders", {})
    sections["profiling"] = "None"  # no profiler runs here: nothing to list for it on every run
    for name in ("expectations", "validations"):
        section = sections.setdefault(name, {})  # GX fills in the rest of each section's defaults
        if isinstance(section, dict):  # not a section switched off with "None"
            section["view"] = _view(PageView, cache)
    return repr(site) != before
