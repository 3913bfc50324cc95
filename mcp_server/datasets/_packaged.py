"""Data sets shipped inside the package (``nba:<name>``): read with ``importlib.resources``, so they
work from a wheel, offline, from any folder. Each carries its source, license and changes."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

NBA_PREFIX = "nba:"


@dataclass(frozen=True)
class PackagedDataset:
    name: str  # without the prefix
    file: str  # in mcp_server/datasets/packaged/
    description: str
    attribution: str  # source, license, changes: shown wherever the data set is described
    schema: str  # validation schema in mcp_server/config/schemas/
    source_url: str

    @property
    def full_name(self) -> str:
        return f"{NBA_PREFIX}{self.name}"

    @property
    def resource(self) -> Traversable:
        return files("mcp_server.datasets") / "packaged" / self.file


RAPTOR_ATTRIBUTION = (
    "Data: FiveThirtyEight, RAPTOR player ratings (https://github.com/fivethirtyeight/data/tree/master/nba-raptor), "
    "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Changes: none (file modern_RAPTOR_by_player.csv "
    "at commit f19a61d, served as nba:raptor)."
)

PACKAGED_DATASETS: dict[str, PackagedDataset] = {
    "raptor": PackagedDataset(
        name="raptor",
        file="nba_raptor.csv",
        description=(
            "NBA player-season impact ratings 2014-2022 (4,685 rows, 1,314 players): possessions, minutes, "
            "RAPTOR box-score and on/off components and totals, wins above replacement (WAR) and the predictive "
            "PREDATOR. The parts add up to their totals; player_id/player_name identify the player (group "
            "splits by player_id), season is the time order."
        ),
        attribution=RAPTOR_ATTRIBUTION,
        schema="nba_raptor",
        source_url="https://github.com/fivethirtyeight/data/tree/master/nba-raptor",
    ),
}


def packaged_dataset(name: str) -> PackagedDataset | None:
    """The packaged data set ``name`` (``nba:raptor``) stands for, or None."""
    if isinstance(name, str) and name.startswith(NBA_PREFIX):
        return PACKAGED_DATASETS.get(name.removeprefix(NBA_PREFIX))
    return None

