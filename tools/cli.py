"""The ``nba-mcp`` command.

    nba-mcp serve                                   # stdio (what MCP clients spawn)
    nba-mcp serve --transport http --port 8765      # streamable HTTP on 127.0.0.1, bearer token required
                                                    # (NBA_MCP_HTTP_STATELESS=true: no sessions, for replicas)
    nba-mcp serve --transport sse                   # legacy HTTP+SSE, kept while clients need it
    nba-mcp demo [--dataset PATH_OR_NAME --target COL]
    nba-mcp claude-config                           # the Claude Desktop snippet for this install

In ``serve`` nothing is ever written to stdout (it is the stdio protocol channel): logs go to
stderr, and MLflow is told to keep quiet before it is first imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

logger = logging.getLogger("nba_mcp")

QUIET_MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def quiet_mlflow() -> None:
    # MLflow reads these from the process environment itself; they must be set before import.
    os.environ.update(QUIET_MLFLOW_ENV)


def configure_logging(level: str, settings=None) -> None:
    """Logs to stderr; with ``settings.log_file`` also to that file, rotated by size
    (``log_max_bytes``, ``log_backups`` kept) so a flood of requests cannot fill the disk."""
    from logging.handlers import RotatingFileHandler

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings is not None and settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(settings.log_file, maxBytes=settings.log_max_bytes,
                                            backupCount=settings.log_backups, encoding="utf-8"))
    logging.basicConfig(
        handlers=handlers,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def serve(args: argparse.Namespace) -> int:
    from mcp_server.settings import Settings
    from mcp_server.mlflow_integration import ensure_sqlite_migrated

    settings = Settings()
    configure_logging(args.log_level or settings.log_level, settings)
    transport = args.transport
    host = args.host or settings.http_host
    port = args.port if args.port is not None else settings.http_port

    from tools.server import build_server

    server = build_server(settings, transport=transport, host=host, port=port)  # checks the config
    # Before serving, so several servers starting on a fresh store never race in its migrations.
    ensure_sqlite_migrated(str(settings.tracking_uri))
    from mcp_server.mlflow_integration import hold_lease

    hold_lease(settings.data_home / "leases")  # before any run is opened: our runs are judged by it
    recover_orphaned_runs(settings)
    from tools.shutdown import EOF_WINDOW_SECONDS, GracefulStop

    stopper = GracefulStop(server.state, settings.shutdown_timeout_seconds)
    stopper.install()
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            run_http(server, settings, transport=transport, host=host, port=port)
    except KeyboardInterrupt:
        pass
    # stdin closed (or the HTTP server returned): the same bounded stop (tools.shutdown), then exit
    # at once, so no worker thread still blocked on stdin or on a fit can hold the process open.
    if transport == "stdio":
        stopper.stop_and_exit("stdin closed", code=0, window=EOF_WINDOW_SECONDS)
    stopper.stop_and_exit("the server stopped", code=0)
    return 0


def recover_orphaned_runs(settings) -> None:
    """End KILLED the runs of crashed servers before serving (see ``mcp_server.mlflow_integration.reap_orphaned_runs``).

    A local sqlite store is cleaned before the first request (one cheap query when nothing
    crashed). A remote tracking server is cleaned in the background: it may be slow or down, and
    the server must answer ``tools/list`` at once regardless. Failure is logged, never fatal.
    """
    import threading

    from mcp_server.mlflow_integration import reap_orphaned_runs

    def reap() -> None:
        try:
            reap_orphaned_runs(settings)
        except Exception as exc:  # noqa: BLE001 - a dirty store must not keep the server down
            logger.warning("could not end orphaned runs at startup: %s", exc)

    if settings.is_remote_tracking:
        threading.Thread(target=reap, name="reap-orphaned-runs", daemon=True).start()
    else:
        reap()


def run_http(server, settings, *, transport: str, host: str, port: int) -> None:
    from tools.http_front import serve_http

    if host not in LOOPBACK_HOSTS:
        logger.warning(
            "binding %s: the server is reachable from other machines; every request still needs a token, "
            "and traffic is plain HTTP unless a TLS-terminating proxy stands in front (docs/deployment.md)",
            host,
        )
    serve_http(server, settings, transport=transport, host=host, port=port, server_class=_uvicorn_server_class())


def _uvicorn_server_class():
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn without its own signal handling: it re-raised SIGTERM after serving, which killed
        the process before any run was ended. ``GracefulStop`` handles the signals instead."""

        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return Server


def claude_config(_args: argparse.Namespace) -> int:
    print(json.dumps(claude_desktop_snippet(), indent=2))
    return 0


def claude_desktop_snippet() -> dict:
    """The ``mcpServers`` entry for Claude Desktop, with absolute paths for this installation."""
    from mcp_server.settings import Settings

    settings = Settings()
    script = Path(sys.executable).with_name("nba-mcp")
    if script.exists():
        command, args = str(script), ["serve"]
    elif shutil.which("nba-mcp"):
        command, args = str(Path(shutil.which("nba-mcp")).resolve()), ["serve"]
    else:
        command, args = sys.executable, ["-m", "tools.cli", "serve"]
    return {
        "mcpServers": {
            "nba-mcp": {
                "command": command,
                "args": args,
                "env": {"NBA_MCP_DATA_HOME": str(settings.data_home)},
            }
        }
    }


def demo(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    from tools.demo import run_demo

    return run_demo(dataset=args.dataset, target=args.target, budget=args.budget, data_home=args.data_home)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nba-mcp", description="MCP server for training, tuning and tracking scikit-learn models."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="serve MCP (stdio by default)")
    serve_parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    serve_parser.add_argument("--host", default=None, help="HTTP bind address (default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8765)")
    serve_parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=None)
    serve_parser.set_defaults(handler=serve)

    demo_parser = commands.add_parser("demo", help="play an agent's session against a spawned server")
    demo_parser.add_argument("--dataset", default="nba:raptor",
                             help="a data set name or a CSV path (default: the built-in NBA RAPTOR ratings)")
    demo_parser.add_argument("--target", default=None,
                             help="target column (default: predator_total for nba:raptor, 'target' for sklearn sets)")
    demo_parser.add_argument("--budget", type=float, default=None,
                             help="the server's default tuning budget in seconds (default: its setting, 60)")
    demo_parser.add_argument("--data-home", default=None, help="where the MLflow store lives (default: data_home)")
    demo_parser.set_defaults(handler=demo)

    config_parser = commands.add_parser("claude-config", help="print the Claude Desktop config snippet")
    config_parser.set_defaults(handler=claude_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_mlflow()
    args = build_parser().parse_args(argv)
    from mcp_server.error_handling import ConfigurationError

    try:
        return args.handler(args)
    except ConfigurationError as exc:
        # A misconfiguration is the operator's to fix: say what, without a traceback.
        print(f"nba-mcp: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
