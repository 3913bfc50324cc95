"""A real install: build the wheel, install it into a fresh venv, and from an unrelated folder run
``nba-mcp demo``, an stdio handshake (initialize + tools/list) and ``nba-mcp claude-config``.

The fresh venv gets the wheel itself (``pip install --no-deps``); its third-party dependencies
come from this environment's site-packages through a ``.pth`` line (a path line, so the editable
install's own hooks in there are not run and the source tree is not importable). That keeps the
test offline and fast while the package, its entry point and its package data come from the wheel
only. ``pip install <wheel>`` with its dependencies is the README's route, measured by hand.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(PROJECT_ROOT)],
        cwd=root)
    (wheel,) = wheels.glob("nba_mcp-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], cwd=root)
    venv_site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         cwd=root).stdout.strip())
    (venv_site / "zz_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = root / "elsewhere"  # an unrelated working directory
    elsewhere.mkdir()
    home = root / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NBA_MCP_", "MLFLOW_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / "data"),
                "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "NBA_MCP_LOG_LEVEL": "WARNING"})
    return {"wheel": wheel, "venv": venv, "python": python, "cwd": elsewhere, "env": env, "home": home}


def test_the_wheel_ships_config_and_no_test_support(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {"mcp_server/config/server.toml", "mcp_server/config/roles.toml",
            "mcp_server/config/schemas/player_stats.toml", "mcp_server/config/schemas/nba_raptor.toml",
            "mcp_server/datasets/packaged/nba_raptor.csv", "mcp_server/datasets/packaged/NOTICE.md"} <= set(names)
    assert not [n for n in names if n.startswith("tests/") or n == "tools/testing.py"]
    code = ("import mcp_server, tools, importlib.util as u; print(mcp_server.__file__); "
            "print(u.find_spec('tools.testing'), u.find_spec('tests'))")
    out = run([str(installed["python"]), "-c", code], cwd=installed["cwd"], env=installed["env"]).stdout.split()
    assert out[0].startswith(str(installed["venv"])), out  # imported from the install, not the source tree
    assert out[1:] == ["None", "None"]


def test_demo_runs_from_an_unrelated_folder(installed):
    done = run([str(installed["venv"] / "bin" / "nba-mcp"), "demo", "--budget", "6"], cwd=installed["cwd"],
               env=installed["env"])
    out = done.stdout
    # The built-in NBA data set, from the wheel, offline; its attribution travels with it.
    assert "nba-mcp demo on 'nba:raptor'" in out and "FiveThirtyEight" in out and "CC BY 4.0" in out
    # validate names the player columns and the additive leaks; the naive call is stopped, then
    # flagged and not promoted when forced; the champion is the corrected, group-split model.
    for expected in ("column 'player_name' identifies repeating entities", "column 'player_id' identifies",
                     "'raptor_total' = 'raptor_offense' + 'raptor_defense'", "stopped: ", "flagged: leak_suspect",
                     "champion: False", "baseline (a random forest", "the search's winner", "champion: v",
                     "Nikola Jokic 2022: predicted predator_total"):
        assert expected in out, expected
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{installed['home'] / 'data' / 'nba-mcp' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("nba-raptor-predator_total", "champion")
    params = client.get_run(champion.run_id).data.params
    assert (params["split.kind"], params["split.column"]) == ("group", "player_id")
    # The store and its artifacts live in the per-user data folder, never in the working directory.
    assert (installed["home"] / "data" / "nba-mcp" / "mlflow.db").exists()
    assert list(installed["cwd"].iterdir()) == []


@pytest.mark.anyio
async def test_stdio_handshake_lists_tools(installed):
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=str(installed["venv"] / "bin" / "nba-mcp"), args=["serve"],
                                   env=installed["env"], cwd=str(installed["cwd"]))
    async with Client(params) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
    assert {"list_datasets", "tune_hyperparameters", "run_pipeline", "server_health"} <= tools


def test_claude_config_points_at_the_installed_command(installed):
    out = run([str(installed["venv"] / "bin" / "nba-mcp"), "claude-config"], cwd=installed["cwd"],
              env=installed["env"]).stdout
    entry = json.loads(out)["mcpServers"]["nba-mcp"]
    assert Path(entry["command"]).parent.parent.resolve() == installed["venv"].resolve()
    assert entry["args"] == ["serve"]
