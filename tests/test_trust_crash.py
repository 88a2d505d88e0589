"""Crash consistency: a writer killed with SIGKILL at every step of a store update leaves the complete
old set or the complete new set (every key readable and matching its fingerprint, never a mix), and
the next command works and leaves no stray key behind.

The writer pauses at a step when ``METIS_ENV_TEST_PAUSE_AT`` names it (keystore.checkpoint); the test
waits for ``metis-env: paused at <step>`` on its stderr and kills it there. The keyring variant uses a
keyring kept on disk (tests/_disk_keyring.py), since an in-memory one would die with the writer.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from metis_env.endpoint import key_fingerprint
from tests import _disk_keyring
from tests._trust import Remote, cases, endpoint_text, start_metis, wait_for_line, write_endpoint
from tests.conftest import exported as expected_export, metis

ENDPOINTS = ("1", "2", "3")
STEPS_BEFORE_COMMIT = ("before-secrets", "secret-1", "secret-2", "secret-3", "before-metadata")
STEPS_AFTER_COMMIT = ("after-metadata", "after-cleanup")
FILE_STEPS = [s for s in STEPS_BEFORE_COMMIT + STEPS_AFTER_COMMIT if not s.startswith("secret-")]
KEYRING_STEPS = list(STEPS_BEFORE_COMMIT + STEPS_AFTER_COMMIT)


def generation_files(folder: Path, generation: int) -> list[str]:
    """Three endpoints whose every value says which generation it belongs to."""
    paths = []
    for endpoint_id in ENDPOINTS:
        paths.append(str(write_endpoint(
            folder / f"gen{generation}", endpoint_id, f"sk-gen{generation}-ep{endpoint_id}-0123456789abcdef",
            base_url=f"https://metis.example/gen{generation}/ep{endpoint_id}/", models=f"gen{generation}-model",
        )))
    return paths


def stored_generation(env: dict[str, str]) -> int:
    """The one generation every stored endpoint belongs to (asserting there is exactly one)."""
    listing = metis("list", "--json", env=env)
    assert (listing.returncode, listing.stderr) == (0, b"")
    rows = json.loads(listing.stdout)["endpoints"]
    assert [r["id"] for r in rows] == list(ENDPOINTS)
    generations = set()
    for row in rows:
        proc = metis("export", row["id"], "--shell", "json", env=env)
        assert (proc.returncode, proc.stderr) == (0, b""), row["id"]
        exported = json.loads(proc.stdout)
        generation = int(exported["MODEL_NAME"].removeprefix("gen").removesuffix("-model"))
        assert exported == expected_export(
            f"https://metis.example/gen{generation}/ep{row['id']}/",
            f"sk-gen{generation}-ep{row['id']}-0123456789abcdef",
            f"gen{generation}-model",
            row["id"],
        )
        assert row["fingerprint"] == key_fingerprint(exported["OPENAI_API_KEY"])
        generations.add(generation)
    assert len(generations) == 1, generations
    return generations.pop()


def held_keys(config: Path, backend: str, keyring_file: Path) -> set[str]:
    if backend == "file":
        path = config / "keys.json"
        return set(json.loads(path.read_text())["keys"]) if path.exists() else set()
    return set(_disk_keyring.entries(str(keyring_file)))


def referenced_keys(config: Path) -> set[str]:
    data = json.loads((config / "endpoints.yaml").read_text())
    return {record["secret"] for record in data["endpoints"].values()}


def kill_at(step: str, args: list[str], env: dict[str, str], remote: Remote | None = None) -> None:
    paused = {**env, "METIS_ENV_TEST_PAUSE_AT": step}
    writer = remote.start_sync(env=paused) if remote else start_metis(*args, env=paused)
    try:
        wait_for_line(writer.stderr, f"metis-env: paused at {step}")
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL


BACKENDS = [("file", step) for step in FILE_STEPS] + [("keyring", step) for step in KEYRING_STEPS]


@pytest.mark.parametrize("backend, step", BACKENDS)
def test_an_import_killed_at_any_step_leaves_the_old_or_the_new_set(backend, step, tmp_path, env_setup):
    keyring_file = tmp_path / "keyring.json"
    env = {"METIS_ENV_STORE": backend}
    if backend == "keyring":
        env.update(PYTHON_KEYRING_BACKEND="tests._disk_keyring.DiskKeyring", METIS_TEST_DISK_KEYRING=str(keyring_file))
    assert metis("import", *generation_files(tmp_path, 1), env=env).returncode == 0

    kill_at(step, ["import", *generation_files(tmp_path, 2)], env)
    assert stored_generation(env) == (1 if step in STEPS_BEFORE_COMMIT else 2)

    proc = metis("import", *generation_files(tmp_path, 3), env=env)
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert stored_generation(env) == 3
    # no key of a killed update, and no key the killed update replaced, stays behind
    assert held_keys(env_setup, backend, keyring_file) == referenced_keys(env_setup)
    assert sorted(p.name for p in env_setup.iterdir()) == sorted(
        ["endpoints.yaml", "sync.lock"] + (["keys.json"] if backend == "file" else [])
    )


def generation_texts(generation: int) -> dict[str, str]:
    return {
        f"metis_endpoint_{endpoint_id}.txt": endpoint_text(
            f"sk-gen{generation}-ep{endpoint_id}-0123456789abcdef",
            base_url=f"https://metis.example/gen{generation}/ep{endpoint_id}/", models=f"gen{generation}-model",
        )
        for endpoint_id in ENDPOINTS
    }


@pytest.fixture
def remote(tmp_path):
    node = Remote(tmp_path / "remote-home")
    yield node
    node.stop()


@pytest.mark.parametrize("backend, step", BACKENDS)
def test_a_sync_killed_at_any_step_leaves_the_old_or_the_new_set(backend, step, tmp_path, env_setup, remote):
    keyring_file = tmp_path / "keyring.json"
    env = {"METIS_ENV_STORE": backend}
    if backend == "keyring":
        env.update(PYTHON_KEYRING_BACKEND="tests._disk_keyring.DiskKeyring", METIS_TEST_DISK_KEYRING=str(keyring_file))
    remote.serve(generation_texts(1))
    assert remote.sync(env=env).returncode == 0

    remote.serve(generation_texts(2))
    kill_at(step, [], env, remote=remote)
    assert stored_generation(env) == (1 if step in STEPS_BEFORE_COMMIT else 2)

    remote.serve(generation_texts(3))
    proc = remote.sync(env=env)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr
    assert stored_generation(env) == 3
    assert held_keys(env_setup, backend, keyring_file) == referenced_keys(env_setup)
    # the passcodes were single-use and are stored nowhere
    for path in env_setup.iterdir():
        assert not any(code.encode() in path.read_bytes() for code in remote.codes), path.name


@pytest.mark.parametrize("backend", ["file", "keyring"])
def test_a_forget_killed_between_the_metadata_and_the_keys_leaves_no_key_behind(backend, tmp_path, env_setup):
    keyring_file = tmp_path / "keyring.json"
    env = {"METIS_ENV_STORE": backend}
    if backend == "keyring":
        env.update(PYTHON_KEYRING_BACKEND="tests._disk_keyring.DiskKeyring", METIS_TEST_DISK_KEYRING=str(keyring_file))
    assert metis("import", *generation_files(tmp_path, 1), env=env).returncode == 0
    kill_at("forget-after-metadata", ["forget", "--all"], env)
    listing = metis("list", "--json", env=env)
    assert (listing.returncode, json.loads(listing.stdout)["endpoints"]) == (0, [])
    assert metis("import", *generation_files(tmp_path, 2), env=env).returncode == 0
    assert stored_generation(env) == 2
    assert held_keys(env_setup, backend, keyring_file) == referenced_keys(env_setup)


# Attack: an update killed between mkstemp and os.replace leaves `.keys.json.*.tmp` holding every key
# (and `.endpoints.yaml.*.tmp`, `.pending.json.*.tmp` piling up); the next write under the lock, and
# forget --all, remove them, and doctor names them until then.
LEFT_BEHIND = (".keys.json.k1x9q2.tmp", ".endpoints.yaml.a8b7c6.tmp", ".pending.json.zz01.tmp")


@pytest.mark.usefixtures("file_store")
@pytest.mark.parametrize("command", ["import", "forget --all", "doctor"])
def test_temp_files_a_killed_update_left_are_removed_by_the_next_write_and_named_by_doctor(command, tmp_path, env_setup):
    write_endpoint(tmp_path / "files", "1", "sk-old-0123456789abcdef")
    metis("import", str(tmp_path / "files" / "metis_endpoint_1.txt"), check=True)
    for name in LEFT_BEHIND:
        (env_setup / name).write_text('{"version": 1, "keys": {"1/sha256:x": "sk-old-0123456789abcdef"}}')
    argv = command.split() + ([str(tmp_path / "files" / "metis_endpoint_1.txt")] if command == "import" else [])
    proc = metis(*argv)
    left = sorted(p.name for p in env_setup.iterdir() if p.name.endswith(".tmp"))
    if command == "doctor":
        found = [line for line in proc.stdout.decode().splitlines() if line.startswith("warn     temp files")]
        assert (left, found) == (sorted(LEFT_BEHIND), [
            f"warn     temp files: 3 left in {env_setup} by an interrupted update (with keys in them): "
            f"{', '.join(sorted(LEFT_BEHIND))}; fix: the next metis-env sync, import or forget removes them, or: rm "
            + " ".join(str(env_setup / n) for n in sorted(LEFT_BEHIND))])
    else:
        assert (proc.returncode, left) == (0, [])
