"""The files in contrib/ for the exporter (issue 17): the alert rules pass `promtool check rules` and their unit tests
`promtool test rules`; the Grafana dashboard is JSON whose every query names a metric the exporter serves; the
systemd unit passes `systemd-analyze verify` where systemd is there."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import REPO

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
