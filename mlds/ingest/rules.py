"""Grouping rules: which dataset a run's frames go to.

From ``-d NAME`` (everything to one dataset; NAME may be a template) or, without
it, from the ``[ingest]`` table of the mlds config (project ``.mlds/config.toml``
over the user config, like remotes)::

    [ingest]
    rules = [
      { path = "SiO2/**", dataset = "SiO2" },        # a folder pattern
      { elements = ["Li", "P", "S"], dataset = "Li3PS4" },
      { dataset = "{formula}" },                     # one dataset per composition
    ]

The first rule that matches a run wins.  ``path`` is a glob on the run folder
relative to the ingest root (``*`` within one folder name, ``**`` across
folders); ``elements`` matches the exact set of elements of the run's frames.
Dataset names may use ``{system}`` (elements, alphabetical, ``Li-P-S``),
``{formula}`` (reduced formula of the first frame, electronegativity order as
in Materials Project: ``SiO2``, ``Li3PS4``), ``{folder}`` (the run folder's
name) and ``{parent}`` (its parent's name).
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from mlds.errors import MldsError

PLACEHOLDERS = ("system", "formula", "folder", "parent")
CONTENT_PLACEHOLDERS = ("system", "formula")
_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")


class RuleError(MldsError):
    """The [ingest] rules or a dataset template are invalid."""


@dataclass(frozen=True)
class Rule:
    dataset: str
    path: str | None = None
    elements: tuple[str, ...] | None = None

    @property
    def needs_content(self) -> bool:
        """True when the target depends on the frames (elements, formula), not only the folder."""
        return self.elements is not None or any(p in CONTENT_PLACEHOLDERS for p in _fields(self.dataset))

    def matches(self, rel_folder: str, elements: Sequence[str] | None) -> bool | None:
        """True/False, or None when the answer needs the run's elements and they are not known yet."""
        if self.path is not None and not _glob_regex(self.path).fullmatch(rel_folder):
            return False
        if self.elements is not None:
            if elements is None:
                return None
            return sorted(self.elements) == sorted(elements)
        return True


@dataclass(frozen=True)
class RunFacts:
    rel_folder: str               # run folder relative to the ingest root, "/"-separated ("" for the root)
    elements: tuple[str, ...] | None = None
    formula: str | None = None


class Router:
    """Names the dataset of a run from ``-d`` or the rules."""

    def __init__(self, dataset: str | None, rules: Sequence[Rule] | None) -> None:
        if dataset:
            self.rules: tuple[Rule, ...] = (Rule(dataset),)
        elif rules:
            self.rules = tuple(rules)
        else:
            raise RuleError("no target dataset: pass -d NAME, or add [ingest] rules to the mlds config "
                            "(e.g. rules = [{ dataset = \"{formula}\" }])")
        for r in self.rules:
            check_template(r.dataset)

    @property
    def needs_content(self) -> bool:
        return any(r.needs_content for r in self.rules)

    def target(self, facts: RunFacts) -> str | None:
        """The dataset name; None when no rule matches.  Raises if the facts needed are missing."""
        for r in self.rules:
            m = r.matches(facts.rel_folder, facts.elements)
            if m is None:
                raise LookupError("elements needed")
            if m:
                if r.needs_content and facts.elements is None:
                    raise LookupError("elements needed")
                return render(r.dataset, facts)
        return None

    def literal_targets(self) -> list[str]:
        """Names of rules without placeholders (known before reading anything)."""
        return [r.dataset for r in self.rules if not _fields(r.dataset)]


@functools.lru_cache(maxsize=256)
def _fields(template: str) -> tuple[str, ...]:
    try:
        return tuple(f for _, f, _, _ in string.Formatter().parse(template) if f is not None)
    except ValueError as err:
        raise RuleError(f"dataset template {template!r}: {err}") from None


def check_template(template: str) -> None:
    for f in _fields(template):
        if f not in PLACEHOLDERS:
            raise RuleError(f"dataset template {template!r}: unknown placeholder {{{f}}} "
                            f"(use {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")


def render(template: str, facts: RunFacts) -> str:
    if not _fields(template):
        return _checked(template)
    parts = facts.rel_folder.split("/") if facts.rel_folder else []
    values = {
        "system": "-".join(sorted(facts.elements or ())) or "unknown",
        "formula": facts.formula or "unknown",
        "folder": parts[-1] if parts else "root",
        "parent": parts[-2] if len(parts) > 1 else "root",
    }
    return _checked(template.format(**values))


@functools.lru_cache(maxsize=4096)
def _checked(name: str) -> str:
    """A valid dataset name from a rendered template (unusable characters become '_')."""
    from mlds.store.store import check_name

    name = _NAME_BAD.sub("_", name).strip("._-") or "unnamed"
    return check_name(name[:128])


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    pat = pattern.strip("/")
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out))


# ---------------------------------------------------------------------- config
def parse_rules(raw: Any, where: str = "[ingest] rules") -> list[Rule]:
    if not isinstance(raw, list):
        raise RuleError(f"{where} must be a list of tables, e.g. rules = [{{ dataset = \"{{formula}}\" }}]")
    rules = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("dataset"), str) or not entry["dataset"]:
            raise RuleError(f"{where}[{i}] needs a 'dataset' string")
        unknown = set(entry) - {"dataset", "path", "elements"}
        if unknown:
            raise RuleError(f"{where}[{i}]: unknown key(s) {', '.join(sorted(unknown))} (use dataset, path, elements)")
        path = entry.get("path")
        if path is not None and not isinstance(path, str):
            raise RuleError(f"{where}[{i}]: 'path' must be a string glob")
        elements = entry.get("elements")
        if elements is not None:
            if not isinstance(elements, list) or not all(isinstance(e, str) for e in elements):
                raise RuleError(f"{where}[{i}]: 'elements' must be a list of element symbols")
            from mlds.elements import atomic_numbers

            bad = [e for e in elements if e not in atomic_numbers]
            if bad:
                raise RuleError(f"{where}[{i}]: unknown element(s) {', '.join(bad)}")
            elements = tuple(sorted(elements))
        check_template(entry["dataset"])
        rules.append(Rule(entry["dataset"], path, elements))
    return rules


def load_rules(cwd: str | None = None) -> list[Rule]:
    """Rules from the project config, else the user config (the same files as remotes)."""
    from mlds.remotes.config import project_config_path, read_config, user_config_path

    for path in (project_config_path(cwd), user_config_path()):
        if path is None:
            continue
        table = read_config(path).get("ingest")
        if table is None:
            continue
        if not isinstance(table, Mapping):
            raise RuleError(f"{path}: [ingest] must be a table")
        if "rules" in table:
            return parse_rules(table["rules"], f"{path}: [ingest] rules")
    return []


# ---------------------------------------------------------------------- formula
# Pauling electronegativities, Z = 1..103 (noble gases without a value sort last).  The
# conventional reduced formula (SiO2, Li3PS4, H2O) orders elements by electronegativity; ASE
# formats only alphabetically / Hill / metals-first (O2Si), and pymatgen is too heavy a
# dependency for one table.
_CHI = (
    2.20, 9.0, 0.98, 1.57, 2.04, 2.55, 3.04, 3.44, 3.98, 9.0, 0.93, 1.31, 1.61, 1.90, 2.19, 2.58, 3.16, 9.0,
    0.82, 1.00, 1.36, 1.54, 1.63, 1.66, 1.55, 1.83, 1.88, 1.91, 1.90, 1.65, 1.81, 2.01, 2.18, 2.55, 2.96, 3.00,
    0.82, 0.95, 1.22, 1.33, 1.60, 2.16, 1.90, 2.20, 2.28, 2.20, 1.93, 1.69, 1.78, 1.96, 2.05, 2.10, 2.66, 2.60,
    0.79, 0.89, 1.10, 1.12, 1.13, 1.14, 1.13, 1.17, 1.20, 1.20, 1.10, 1.22, 1.23, 1.24, 1.25, 1.10, 1.27,
    1.30, 1.50, 2.36, 1.90, 2.20, 2.20, 2.28, 2.54, 2.00, 1.62, 2.33, 2.02, 2.00, 2.20, 2.20,
    0.70, 0.90, 1.10, 1.30, 1.50, 1.38, 1.36, 1.28, 1.30, 1.30, 1.30, 1.30, 1.30, 1.30, 1.30, 1.30, 1.30,
)


def reduced_formula(numbers: Iterable[int]) -> str:
    """``SiO2`` for Si8O16: counts divided by their gcd, elements by electronegativity (Hill order with carbon)."""
    import math
    from collections import Counter

    from mlds.elements import chemical_symbols

    counts = Counter(int(z) for z in numbers)
    if not counts:
        return ""
    g = 0
    for c in counts.values():
        g = math.gcd(g, c)
    if 6 in counts:  # organic convention: C, H, then alphabetical (CH4, not H4C)
        order = sorted(counts, key=lambda z: (z != 6, z != 1, chemical_symbols[z]))
    else:
        order = sorted(counts, key=lambda z: (_CHI[z - 1] if 0 < z <= len(_CHI) else 9.0, chemical_symbols[z]))
    return "".join(chemical_symbols[z] + (str(counts[z] // g) if counts[z] // g != 1 else "") for z in order)
