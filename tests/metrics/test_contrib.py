"""The files in contrib/ for the exporter (issue 17): the alert rules pass `promtool check rules` and their unit tests
`promtool test rules`; the Grafana dashboard is JSON whose every query names a metric the exporter serves; the
systemd unit passes `systemd-analyze verify` where systemd is there."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import REPO, tool
from tests.metrics.serving import samples

RULES = REPO / "contrib" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: .ci/run installs Debian's prometheus package, which has it")
    return path


def test_the_rules_pass_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", "ipcmon-rules.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    result = subprocess.run([promtool(), "test", "rules", "ipcmon-rules.test.yml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_says_what_to_run_and_is_unit_tested() -> None:
    import yaml

    rules = yaml.safe_load((RULES / "ipcmon-rules.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert {rule["alert"] for rule in alerts} >= {
        "IpcmonShmMountNearlyFull", "IpcmonShmOrphanedBytesGrowing", "IpcmonShmDeletedButHeld", "IpcmonMqueueFull",
        "IpcmonDeadlock", "IpcmonMqueueRlimitNearlyUsed"}
    tests = yaml.safe_load((RULES / "ipcmon-rules.test.yml").read_text())
    tested = {check["alertname"] for test in tests["tests"] for check in test["alert_rule_test"] if check["exp_alerts"]}
    for rule in alerts:
        assert rule["annotations"]["summary"] and "Run `" in rule["annotations"]["description"], rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool unit test that fires it"


DASHBOARD = REPO / "contrib" / "grafana" / "ipcmon.json"
METRIC = re.compile(r"\b(ipcmon_[a-z_]+)\b")


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]


def test_the_dashboard_is_json_with_an_instance_variable_and_a_row_per_mechanism() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert "ipcmon_scan_duration_seconds" in variables["instance"]["definition"]
    assert variables["datasource"]["type"] == "datasource"
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    for word in ("Shared memory", "shm tmpfs", "message queues", "Pipes", "signals", "Budgets"):
        assert any(word in title for title in rows), word
    queries = dashboard_queries()
    assert queries and all('instance=~"$instance"' in query for query in queries)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_metric_the_dashboard_queries_is_served() -> None:
    from tests.metrics.test_exporter import exposition

    # By family (HELP and TYPE are served even when a family has no sample now: no user has a queue, say), with a
    # counter's samples named NAME_total.
    families = {family.name: family.type for family in text_string_to_metric_families(exposition())}
    served = {f"{name}_total" if kind == "counter" else name for name, kind in families.items()}
    used = {name for query in dashboard_queries() for name in METRIC.findall(query)}
    assert used and used <= served, used - served
    assert served <= used, f"no panel shows {served - used}"


UNIT = REPO / "contrib" / "systemd" / "ipcmon-exporter.service"


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the systemd package): the unit is not verified here")
    # ExecStart names /usr/local/bin/ipcmon, which a checkout has not installed: verify a copy that runs this one.
    text = UNIT.read_text().replace("ExecStart=/usr/local/bin/ipcmon", f"ExecStart={sys.executable} -m ipcmon")
    assert text != UNIT.read_text()
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "--listen 127.0.0.1:9464"):
        assert line in text


def unreadable_with_capabilities(directory: Path, capabilities: list[str] | None) -> float:
    """ipcmon_unreadable_processes of one `ipcmon exporter --textfile --once`, run with only these capabilities in
    its bounding set and no new privileges (as the unit runs it), or unrestricted with None."""
    prefix: list[str] = []
    if capabilities is not None:
        bounding = ",".join(["-all", *(f"+{name.removeprefix('CAP_').lower()}" for name in capabilities)])
        prefix = [tool("setpriv"), f"--bounding-set={bounding}", "--inh-caps=-all", "--no-new-privs"]
    directory.mkdir()
    result = subprocess.run([*prefix, sys.executable, "-m", "ipcmon", "exporter", "--textfile", str(directory),
                             "--once"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return samples((directory / "ipcmon.prom").read_text())[("ipcmon_unreadable_processes", ())]


def test_the_units_capabilities_read_every_process_root_reads(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the unit runs the exporter as root with a reduced capability bounding set")
    line = next(line for line in UNIT.read_text().splitlines() if line.startswith("CapabilityBoundingSet="))
    capabilities = line.removeprefix("CapabilityBoundingSet=").split()
    assert unreadable_with_capabilities(tmp_path / "unit", capabilities) <= unreadable_with_capabilities(
        tmp_path / "root", None)
    # The check can fail: without CAP_SYS_PTRACE other users' descriptors are not readable.
    others = [name for name in capabilities if name != "CAP_SYS_PTRACE"]
    assert unreadable_with_capabilities(tmp_path / "no-ptrace", others) > unreadable_with_capabilities(
        tmp_path / "root-again", None)
