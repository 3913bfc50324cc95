"""nba-mcp domain library: tracking, tuning, pipelines, validation and safety, with no MCP imports."""

__version__ = "0.1.0"
