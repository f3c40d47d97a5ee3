"""The code location as `dg` loads it (`dg dev`, `dg check defs`): the component instances under
`zenskar_pipeline/components/`. Same definitions as `definitions.py`, which `workspace.yaml` and the image
load without the project's files around them.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
