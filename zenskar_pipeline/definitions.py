"""Composition root: the streams file becomes Dagster definitions.

The sync engine and its assets arrive with the sync-engine issue; until then the code location loads empty,
so that `dagster dev` and the workspace are wired and checked from the start.
"""

from __future__ import annotations

import dagster as dg

defs = dg.Definitions()
