"""The store against a real Secret Service: gnome-keyring in a private D-Bus session (TESTING.md).

Under CI (CI=true) a missing dbus-daemon or gnome-keyring-daemon fails these tests instead of skipping.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from metis_env import secret_service
from tests._secret_service import SecretServiceSession, require_tools
from tests.conftest import REPO, metis

HINT = "--store file, or METIS_ENV_STORE=file, or 'store: file' in config.yaml"
READ_ADVICE = ("unlock the keyring (then metis-env store move --to file makes the keys usable without it), "
               "or fetch the key again into the file store (metis-env --store file sync, import or login)")


@pytest.fixture
def session(tmp_path, monkeypatch):
    require_tools()
    service = SecretServiceSession(tmp_path / "secret-service")
    try:
        yield service
    finally:
        service.stop()


def run(session, *args: str) -> subprocess.CompletedProcess:
    """metis-env in a subprocess pointed at this Secret Service, keyring choosing its backend itself."""
    env = {**session.env, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "metis_env", *args], env=env, capture_output=True, timeout=60)


@pytest.fixture
def stored(session, endpoint_files):
    """Endpoint 1 stored through metis-env into a real, unlocked gnome-keyring."""
    session.start_keyring("the-right-password")
    result = run(session, "import", str(endpoint_files[0]))
    assert (result.returncode, result.stderr) == (0, b"endpoint 1: new\n")
    return session


def secret_ref(config_dir) -> str:
    import json

    return json.loads((config_dir / "endpoints.yaml").read_text())["endpoints"]["1"]["secret"]


def test_the_key_lands_in_secret_service_under_keyrings_attributes(stored, env_setup):
    ref = secret_ref(env_setup)
    looked_up = subprocess.run(["secret-tool", "lookup", "service", "metis-env", "username", ref],
                               env=stored.env, capture_output=True, timeout=30)
    assert (looked_up.returncode, looked_up.stdout) == (0, b"sk-test-one-0123456789abcdef")


def test_secret_service_lookup_reads_it_and_misses_cleanly(stored, env_setup, monkeypatch):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", stored.env["DBUS_SESSION_BUS_ADDRESS"])
    ref = secret_ref(env_setup)
    assert secret_service.lookup("metis-env", ref) == "sk-test-one-0123456789abcdef"
    assert secret_service.lookup("metis-env", "no-such-entry") is None
    assert secret_service.lookup("another-service", ref) is None


def test_export_reads_the_key_without_keyring(stored):
    result = run(stored, "export", "1", "--shell", "dotenv")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        b"OPENAI_BASE_URL='https://metis.alcf.anl.gov/v1/'\n"
        b"OPENAI_API_BASE='https://metis.alcf.anl.gov/v1/'\n"
        b"OPENAI_API_KEY='sk-test-one-0123456789abcdef'\n"
        b"MODEL_NAME='DeepSeek-R1'\n"
        b"SAMBANOVA_API_KEY='sk-test-one-0123456789abcdef'\n"
        b"SAMBANOVA_API_BASE='https://metis.alcf.anl.gov/v1/'\n"
        b"SAMBA_NOVA_BASE_URL='https://metis.alcf.anl.gov/v1/'\n"
        b"OPENAI_AGENTS_DISABLE_TRACING='1'\n"
        b"LITELLM_LOCAL_MODEL_COST_MAP='True'\n"
        b"METIS_ENV_ENDPOINT='1'\n",
        b"",
    )


def test_lookup_gives_none_without_a_bus(monkeypatch):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/metis-env-test-bus")
    assert secret_service.lookup("metis-env", "1/x") is None
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    assert secret_service.lookup("metis-env", "1/x") is None


def test_lookup_is_bounded_when_nothing_answers(tmp_path, monkeypatch):
    """A socket that accepts but never speaks D-Bus: the lookup gives up within its timeout."""
    import socket

    path = str(tmp_path / "silent-bus")
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(path)
    silent.listen(1)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={path}")
    started = time.monotonic()
    try:
        assert secret_service.lookup("metis-env", "1/x", timeout=0.3) is None
    finally:
        silent.close()
    assert time.monotonic() - started < 2


def test_a_locked_keyring_gives_one_line_and_exit_5(stored):
    stored.start_keyring("a-wrong-password")  # the login keyring exists, but stays locked
    result = run(stored, "export", "1")
    assert (result.returncode, result.stdout) == (5, b"false\n")
    assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr
    assert result.stderr.startswith(b"metis-env: error: the key of endpoint 1 is in the OS keyring, and ")
    assert result.stderr.endswith(READ_ADVICE.encode() + b"\n")


def test_a_keyring_never_unlocked_gives_one_line_and_exit_5(session, endpoint_files):
    session.start_keyring(None)
    result = run(session, "import", str(endpoint_files[0]))
    assert result.returncode == 5
    assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr
    assert HINT.encode() in result.stderr


def test_no_dbus_at_all_gives_the_same_clear_error(endpoint_files):
    """No session bus: keyring picks its `fail` backend (here named, as conftest does for every subprocess)."""
    result = metis("import", str(endpoint_files[0]))
    assert (result.returncode, result.stdout) == (5, b"")
    assert result.stderr == (
        b"metis-env: error: no OS keyring is available here (usual on HPC nodes, containers and CI); "
        b"use the file store instead: " + HINT.encode() + b"\n"
    )


def test_keys_move_from_the_keyring_to_the_file_store_and_back(stored, env_setup):
    """A laptop user about to work over ssh: while the keyring answers, move the keys into the file
    store; then export works with no keyring at all, and the keyring keeps no copy."""
    ref = secret_ref(env_setup)

    def in_keyring() -> bytes:
        return subprocess.run(["secret-tool", "lookup", "service", "metis-env", "username", ref],
                              env=stored.env, capture_output=True, timeout=30).stdout

    def keys_json() -> dict:
        import json

        path = env_setup / "keys.json"
        return json.loads(path.read_text())["keys"] if path.exists() else {}

    over_ssh = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}  # no keyring answers there
    before = metis("get", "key", "1", env=over_ssh)
    moved = run(stored, "store", "move", "--to", "file")
    after = metis("get", "key", "1", env=over_ssh)
    assert [(r.returncode, r.stdout, r.stderr) for r in (before, moved, after)] == [
        (5, b"", b"metis-env: error: the key of endpoint 1 is in the OS keyring, and no OS keyring is available here "
                 b"(usual on HPC nodes, containers and CI): " + READ_ADVICE.encode() + b"\n"),
        (0, b"", b"endpoint 1: moved to the file store\n"),
        (0, b"sk-test-one-0123456789abcdef\n", b""),
    ]
    assert (in_keyring(), keys_json()) == (b"", {ref: "sk-test-one-0123456789abcdef"})
    back = run(stored, "store", "move", "--to", "keyring")
    again = run(stored, "store", "move", "--to", "keyring")
    assert [(r.returncode, r.stderr) for r in (back, again)] == [
        (0, b"endpoint 1: moved to the OS keyring\n"),
        (0, b"endpoint 1: already in the OS keyring\n"),
    ]
    assert (in_keyring(), keys_json()) == (b"sk-test-one-0123456789abcdef", {})
