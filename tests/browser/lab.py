"""A JupyterLab server for one test: 127.0.0.1, a free port, a random token, private dirs.

Everything it writes (config, runtime files, workspaces, the notebook copy that Lab autosaves)
lives under a temporary folder, so the checkout and the user's Jupyter settings stay untouched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@dataclass
class LabServer:
    url: str  # base URL, e.g. http://127.0.0.1:8899
    token: str
    root: Path  # the notebooks' folder the server serves
    log: Path

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jupyter_env(tmp: Path, config: Path | None = None) -> dict[str, str]:
    """os.environ with Jupyter's config, runtime, data and IPython folders under `tmp` (the user's
    settings untouched) and a `python3` kernel spec that runs this interpreter, so that kernels
    started by Lab or nbconvert import what the tests import (PYTHONPATH passes through)."""
    run_env = dict(os.environ)
    run_env.update({
        "JUPYTER_CONFIG_DIR": str(config or tmp / "jupyter_config"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "IPYTHONDIR": str(tmp / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    })
    kspec = tmp / "data" / "kernels" / "python3"
    kspec.mkdir(parents=True, exist_ok=True)
    (kspec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    return run_env


@contextmanager
def lab_server(tmp: Path, notebooks: list[Path], env: dict[str, str] | None = None,
               timeout_s: float = 60.0) -> Iterator[LabServer]:
    """Start `jupyter lab` serving copies of `notebooks`; stop it (and its kernels) on exit."""
    root = tmp / "notebooks"
    root.mkdir(parents=True)
    for nb in notebooks:
        shutil.copy(nb, root / nb.name)
    config = tmp / "jupyter_config"
    (config / "labconfig").mkdir(parents=True)
    # no "build recommended" dialog (Dash's lab extension triggers it), see ecosystem notes
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"buildCheck": False, "buildAvailable": False}))
    settings = tmp / "lab_settings"
    settings.mkdir()
    # no news fetch and no update check (the machine has no network); every cell kept in the
    # page (Lab 4 otherwise detaches cells scrolled out of view, so their figures cannot be checked)
    (settings / "overrides.json").write_text(json.dumps({
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                        "checkForUpdates": False},
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    }))
    port, token = free_port(), secrets.token_hex(16)
    run_env = jupyter_env(tmp, config)
    run_env.update(env or {})
    log = tmp / "lab.log"
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
        f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}", "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers run as root
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=run_env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jupyter lab did not answer in {timeout_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield LabServer(url, token, root, log)
    finally:
        # the server's own process group: the server and the kernels it started
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


def kill_leftover_kernels(tmp: Path) -> list[int]:
    """Kernels whose connection file lies under `tmp` (ours) that outlived the server: SIGKILL
    them by pid. Returns the pids killed."""
    killed = []
    marker = str(tmp / "runtime")
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            raw = (proc_dir / "cmdline").read_bytes()
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ipykernel" in cmdline and marker in cmdline:
            try:
                os.kill(int(proc_dir.name), signal.SIGKILL)
                killed.append(int(proc_dir.name))
            except ProcessLookupError:
                pass
    return killed
