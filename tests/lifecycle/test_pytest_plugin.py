"""The pytest plugin fails a test that leaves a POSIX shm segment or queue behind, and passes a clean one."""

from __future__ import annotations

import os
import uuid

import posix_ipc
import pytest


def _name() -> str:
    return f"/ipcmon-test-{os.getpid()}-plugin{uuid.uuid4().hex[:6]}"


def _write_tests(pytester: pytest.Pytester, name: str) -> None:
    pytester.makeini(f"[pytest]\nipc_leaks_match = {name}*\n")
    pytester.makepyfile(
        f"""
        import posix_ipc

        def test_clean():
            shm = posix_ipc.SharedMemory({name + "-clean"!r}, posix_ipc.O_CREX, size=1)
            shm.close_fd()
            shm.unlink()

        def test_leaky():
            posix_ipc.SharedMemory({name + "-leak"!r}, posix_ipc.O_CREX, size=1).close_fd()
            posix_ipc.MessageQueue({name + "-q"!r}, posix_ipc.O_CREX).close()
        """
    )


def _remove(name: str) -> None:
    for remove, suffix in ((posix_ipc.unlink_shared_memory, "-leak"), (posix_ipc.unlink_message_queue, "-q")):
        try:
            remove(name + suffix)
        except posix_ipc.ExistentialError:
            pass


def test_plugin_fails_the_leaking_test(pytester: pytest.Pytester) -> None:
    name = _name()
    _write_tests(pytester, name)
    try:
        result = pytester.runpytest_subprocess("--ipc-leaks")
    finally:
        _remove(name)
    result.assert_outcomes(passed=2, errors=1)  # the leak fails test_leaky's teardown
    result.stdout.fnmatch_lines([f"*test_leaky*left 2 POSIX IPC objects behind*{name}-leak*mqueue:{name}-q*"])
    assert "test_clean left" not in result.stdout.str()


def test_plugin_warn_mode_and_off_by_default(pytester: pytest.Pytester) -> None:
    name = _name()
    _write_tests(pytester, name)
    try:
        warned = pytester.runpytest_subprocess("--ipc-leaks", "--ipc-leaks-mode=warn")
    finally:
        _remove(name)
    warned.assert_outcomes(passed=2, warnings=1)
    warned.stdout.fnmatch_lines(["*IpcLeakWarning*left 2 POSIX IPC objects behind*"])
    try:
        off = pytester.runpytest_subprocess()
    finally:
        _remove(name)
    off.assert_outcomes(passed=2)


def test_plugin_names_a_leaked_semaphore_as_sem_open_does_and_how_to_remove_it(pytester: pytest.Pytester) -> None:
    name = _name()
    pytester.makeini(f"[pytest]\nipc_leaks_match = {name}*\n")
    pytester.makepyfile(
        f"""
        import posix_ipc

        def test_semaphore():
            posix_ipc.Semaphore({name + "-sem"!r}, posix_ipc.O_CREX).close()
        """
    )
    try:
        result = pytester.runpytest_subprocess("--ipc-leaks")
    finally:
        try:
            posix_ipc.unlink_semaphore(name + "-sem")
        except posix_ipc.ExistentialError:
            pass
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        f"*test_semaphore left 1 POSIX IPC objects behind: 'sem:{name}-sem'",
        f"(remove them with: ipcmon clean --yes --min-age 0 --match '{name}*')",
    ])
    assert "/sem." not in result.stdout.str()
