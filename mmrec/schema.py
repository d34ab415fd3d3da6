"""The two bases of every params.yaml section's schema, so that what a section refuses is said once.

Every section refuses non-finite numbers: YAML reads `.inf` and `.nan` as floats, and an infinite
learning rate or equivalence margin would otherwise pass validation and make every result
meaningless (a margin of `.inf` calls every difference "equivalent").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictParams(BaseModel):
    """A section whose keys are all declared: an unknown key (a typo) is an error."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OpenParams(BaseModel):
    """A section that also holds named sub-sections (`data.<source>`, `train.<entry>`), each
    validated afterwards by its own schema."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
