"""Automatic collection: finished calculations in run trees become new dataset versions.

``mlds.ingest.ingest(paths, dataset)`` is one pass (what ``mlds ingest`` runs);
``mlds.ingest.watch`` repeats it.  See :mod:`mlds.ingest.core` for the steps.
"""

from mlds.ingest.core import IngestResult, Outcome, ingest, watch
from mlds.ingest.rules import Rule, load_rules, parse_rules

__all__ = ["ingest", "watch", "IngestResult", "Outcome", "Rule", "load_rules", "parse_rules"]
