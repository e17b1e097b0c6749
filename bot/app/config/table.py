"""The base of every config table."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigTable(BaseModel):
    """Every table: frozen, and an unknown key is an error."""

    # hide_input_in_errors: a raw ValidationError, if ever printed, must not show secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
