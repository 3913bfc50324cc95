"""Where the package's own data lives: defaults, roles and validation schemas ship inside the
package and are read with ``importlib.resources``, never relative to a source tree or the
working directory (an installed wheel has neither)."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

PACKAGED_CONFIG: Traversable = files("mcp_server") / "config"
PACKAGED_DEFAULTS: Traversable = PACKAGED_CONFIG / "server.toml"
PACKAGED_ROLES: Traversable = PACKAGED_CONFIG / "roles.toml"
PACKAGED_SCHEMAS: Traversable = PACKAGED_CONFIG / "schemas"
