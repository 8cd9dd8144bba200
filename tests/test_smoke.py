"""The package installs and `ipcmon snapshot` runs end to end."""

import json
import subprocess
import sys


def test_snapshot_json_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "ipcmon", "snapshot", "--json"], capture_output=True, check=True)
    data = json.loads(result.stdout)
    assert {"taken_at", "hidden_processes", "shm", "mqueues", "pipes", "signals", "sysv"} <= data.keys()
    assert any(process["pid"] == 1 for process in data["processes"])
