"""Fixtures shared by every test: no test touches a real home, config dir or keyring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import keyring
import pytest

from tests._memory_keyring import MemoryKeyring
from tests._trust import pytest_runtest_logreport, pytest_terminal_summary  # noqa: F401  (the trust suite's summary line)

REPO = Path(__file__).resolve().parent.parent

# The tests send Ctrl-C (SIGINT) to the programs they start, as a person's terminal does. A shell that
# starts the suite in the background without job control (`.ci/run &` in a script, nohup) starts it
# with SIGINT and SIGQUIT ignored (POSIX), every child inherits that across exec, and Python then
# installs no KeyboardInterrupt handler: the demo at its passcode prompt and `demo --serve` waited
# for a Ctrl-C that could never arrive. Give the suite's children the terminal's default back.
for _signum in (signal.SIGINT, signal.SIGQUIT):
    if signal.getsignal(_signum) == signal.SIG_IGN:
        signal.signal(_signum, signal.default_int_handler if _signum == signal.SIGINT else signal.SIG_DFL)


@pytest.fixture(autouse=True)
def env_setup(tmp_path, monkeypatch):
    """A private config dir, a fake HOME, an in-memory keyring in-process, and keyring's `fail`
    backend for any subprocess (so nothing can reach a real keyring by accident)."""
    config = tmp_path / "config"
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("METIS_ENV_CONFIG_DIR", str(config))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for name in list(os.environ):
        if name.startswith("METIS_ENV_") and name != "METIS_ENV_CONFIG_DIR":
            monkeypatch.delenv(name)
    for name in ("XDG_CONFIG_HOME", "DBUS_SESSION_BUS_ADDRESS", "OPENAI_API_KEY", "OPENAI_BASE_URL", "MODEL_NAME", "SAMBANOVA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHELL", "/bin/bash")
    runtime = tmp_path / "run"  # the node broker's state: one broker per test, stopped after it
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # the broker's stable port (broker/client.py): one free port per test, not the uid's, which every
    # test run of this user on the machine would share
    monkeypatch.setenv("METIS_ENV_PROXY_PORT", str(free_port()))
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    yield config
    keyring.set_keyring(previous)
    if (runtime / "metis-env" / "broker.json").exists():
        from metis_env.broker.runtime import stop

        stop()


WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def signal_state() -> tuple:
    """What a child of this process inherits across exec: the calling thread's blocked signals and
    which of the watched signals are ignored (a handler of ours becomes the default in the child)."""
    blocked = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return blocked, tuple(signal.getsignal(s) == signal.SIG_IGN for s in WATCHED_SIGNALS)


@pytest.fixture(autouse=True)
def signals_kept():
    """Every test leaves pytest's signal mask and dispositions as it found them. A test that left
    SIGINT blocked or ignored would make every later child that waits for Ctrl-C hang (the demo's,
    `demo --serve`'s): this names the test that did it and puts the state back for the rest."""
    before = signal_state()
    yield
    after = signal_state()
    if after != before:
        signal.pthread_sigmask(signal.SIG_SETMASK, before[0])
        for signum, ignored in zip(WATCHED_SIGNALS, before[1]):
            if not ignored and signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        pytest.fail(f"this test left pytest's signal state changed (blocked, ignored): {before} -> {after}")


def free_port(first: int = 20000, last: int = 30000) -> int:
    """A loopback port below the ephemeral range that nothing listens on now."""
    import random
    import socket

    while True:
        port = random.randrange(first, last)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    return keyring.get_keyring()


def exported(base_url: str, key: str, model: str, endpoint_id: str) -> dict:
    """Every variable export sets for an endpoint-file endpoint, in the order it prints them."""
    return {
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_BASE": base_url,
        "OPENAI_API_KEY": key,
        "MODEL_NAME": model,
        "SAMBANOVA_API_KEY": key,
        "SAMBANOVA_API_BASE": base_url,
        "SAMBA_NOVA_BASE_URL": base_url,
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "METIS_ENV_ENDPOINT": endpoint_id,
    }


ENDPOINT_1 = (
    "#DO NOT EDIT THIS FILE BY HAND - THIS FILE IS AUTOGENERATED - YOUR CHANGES WILL BE OVERWRITTEN\n"
    "BASE_URL=https://metis.alcf.anl.gov/v1/\n"
    "SAMBANOVA_API_KEY=sk-test-one-0123456789abcdef\n"
    "MODELS=DeepSeek-R1\n"
)
ENDPOINT_2 = (
    "#DO NOT EDIT THIS FILE BY HAND - THIS FILE IS AUTOGENERATED - YOUR CHANGES WILL BE OVERWRITTEN\n"
    "BASE_URL=https://metis.alcf.anl.gov/v2/\n"
    "SAMBANOVA_API_KEY=sk-test-two-0123456789abcdef\n"
    "MODELS=Llama-4-Maverick-17B-128E-Instruct,Llama-3.3-70B-Instruct\n"
)


@pytest.fixture
def endpoint_files(tmp_path) -> list[Path]:
    """Two endpoint files shaped like ALCF's, in a folder of their own."""
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for number, text in ((1, ENDPOINT_1), (2, ENDPOINT_2)):
        path = folder / f"metis_endpoint_{number}.txt"
        path.write_text(text)
        paths.append(path)
    return paths


def metis(*args: str, input: bytes | None = None, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would (python -m metis_env, this checkout)."""
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONPATH", str(REPO))
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "metis_env", *args],
        input=input,
        capture_output=True,
        env=full_env,
        check=check,
        timeout=60,
    )


@pytest.fixture
def file_store(monkeypatch):
    """Subprocess tests use the explicit file store (the in-memory keyring is in-process only)."""
    monkeypatch.setenv("METIS_ENV_STORE", "file")


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a test that did not run: fail the run instead of passing quietly."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
        if skipped and session.exitstatus == 0:
            reporter.write_line(f"CI: {skipped} test(s) were skipped; every test must run in CI", red=True)
            session.exitstatus = 1
