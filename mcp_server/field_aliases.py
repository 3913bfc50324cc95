"""Other names a request field accepts, in one table: every request model that has the field
accepts all of them (``accepting_aliases``), so a name that works in one tool works in every tool
with that field. The schema shows only the field's own name; ``tools/list`` stays one name per
concept, and ``tests/test_tools_arguments.py`` checks that no tool leaves an alias out.
"""

from __future__ import annotations

from pydantic import AliasChoices

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "drop": ("drop_columns",),
    "schema_name": ("schema",),
}


def accepting_aliases(field: str) -> AliasChoices:
    """The ``validation_alias`` of ``field``: its own name first (the schema shows that one)."""
    return AliasChoices(field, *FIELD_ALIASES[field])
