"""Concurrency: many exports while imports rotate every key at once. Each export prints one consistent
set: the key, the model and the base URL all of one generation (each value names its generation),
and never fails. Two writers at once: the second is refused at once with BusyError, and readers
meanwhile see the old set.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests._trust import Remote, cases, start_metis, wait_for_line, write_endpoint
from tests.conftest import exported as expected_export, metis

pytestmark = pytest.mark.usefixtures("file_store")

ENDPOINTS = ("1", "2")
ROTATIONS = 10
READERS = 3


def generation_files(folder: Path, generation: int) -> list[str]:
    return [
        str(write_endpoint(
            folder / f"gen{generation}", endpoint_id, f"sk-gen{generation}-ep{endpoint_id}-0123456789abcdef",
            base_url=f"https://metis.example/gen{generation}/ep{endpoint_id}/", models=f"gen{generation}-model",
        ))
        for endpoint_id in ENDPOINTS
    ]


def consistent(endpoint_id: str, exported: dict) -> int | None:
    """The generation of an export, if every value belongs to the same one; else None."""
    try:
        generation = int(exported["MODEL_NAME"].removeprefix("gen").removesuffix("-model"))
    except (KeyError, ValueError):
        return None
    expected = expected_export(
        f"https://metis.example/gen{generation}/ep{endpoint_id}/",
        f"sk-gen{generation}-ep{endpoint_id}-0123456789abcdef",
        f"gen{generation}-model",
        endpoint_id,
    )
    return generation if exported == expected else None


def exports_during(rotate, tmp_path: Path) -> list[tuple[str, int, bytes, bytes]]:
    """Run exports from READERS threads for as long as ``rotate()`` runs; every (id, exit, out, err)."""
    done = threading.Event()
    seen: list[tuple[str, int, bytes, bytes]] = []
    lock = threading.Lock()

    def reader(number: int) -> None:
        count = 0
        while not done.is_set():
            endpoint_id = ENDPOINTS[(number + count) % len(ENDPOINTS)]
            proc = metis("export", endpoint_id, "--shell", "json")
            with lock:
                seen.append((endpoint_id, proc.returncode, proc.stdout, proc.stderr))
            count += 1

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    for thread in threads:
        thread.start()
    try:
        rotate()
    finally:
        done.set()
        for thread in threads:
            thread.join()
    return seen


def assert_all_consistent(seen, generations: range) -> None:
    bad = []
    for endpoint_id, code, out, err in seen:
        exported = json.loads(out) if code == 0 else {}
        if (code, err) != (0, b"") or consistent(endpoint_id, exported) not in generations:
            bad.append((endpoint_id, code, out.decode(), err.decode()))
    assert bad == []


def test_exports_during_repeated_imports_rotating_every_key_see_one_generation(tmp_path):
    metis("import", *generation_files(tmp_path, 1), check=True)

    def rotate() -> None:
        for generation in range(2, ROTATIONS + 2):
            proc = metis("import", *generation_files(tmp_path, generation))
            assert (proc.returncode, proc.stdout) == (0, b"")

    seen = exports_during(rotate, tmp_path)
    assert len(seen) >= READERS * ROTATIONS // 2
    assert_all_consistent(seen, range(1, ROTATIONS + 2))
    cases(len(seen) + ROTATIONS)


def test_a_second_writer_is_refused_at_once_and_readers_see_the_old_set(tmp_path, env_setup):
    metis("import", *generation_files(tmp_path, 1), check=True)
    writer = start_metis("import", *generation_files(tmp_path, 2), env={"METIS_ENV_TEST_PAUSE_AT": "before-metadata"})
    try:
        wait_for_line(writer.stderr, "metis-env: paused at before-metadata")
        started = time.monotonic()
        second = metis("import", *generation_files(tmp_path, 3))
        assert time.monotonic() - started < 10
        assert (second.returncode, second.stdout, second.stderr.decode()) == (
            16, b"", f"metis-env: error: another metis-env sync or import is running (lock {env_setup / 'sync.lock'}); "
            "wait for it to finish\n",
        )
        forget = metis("forget", "--all")
        assert forget.returncode == 16
        reads = [(i, *(lambda p: (p.returncode, p.stdout, p.stderr))(metis("export", i, "--shell", "json"))) for i in ENDPOINTS]
        assert_all_consistent(reads, range(1, 2))
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert metis("import", *generation_files(tmp_path, 4)).returncode == 0
    assert_all_consistent([(i, *(lambda p: (p.returncode, p.stdout, p.stderr))(metis("export", i, "--shell", "json"))) for i in ENDPOINTS], range(4, 5))
    cases(6)


@pytest.mark.parametrize("command", ["export", "run"])
def test_an_update_landing_between_reading_the_metadata_and_the_key_never_mixes_two_sets(command, tmp_path, monkeypatch):
    """The worst moment, made certain: a whole import runs right after the reader's metadata read,
    so that the key it then reads belongs to the next generation (and the old one is deleted)."""
    from metis_env import actions
    from metis_env.settings import load_settings
    from metis_env.store import Store, open_store

    settings = load_settings()
    actions.import_files(open_store(settings), generation_files(tmp_path, 1), None)
    original = Store.endpoints
    fired = []

    def endpoints_then_rotate(self):
        result = original(self)
        if not fired:
            fired.append(True)
            actions.import_files(open_store(settings), generation_files(tmp_path, 2), None)
        return result

    monkeypatch.setattr(Store, "endpoints", endpoints_then_rotate)
    if command == "export":
        code, _warnings = actions.export_code(open_store(settings), settings, "1", None, "json", False)
        exported = json.loads(code)
    else:
        ran = []
        monkeypatch.setattr(actions.os, "execvpe", lambda file, argv, env: ran.append(env) or 0)
        actions.run_command(open_store(settings), settings, "1", None, ["true"])
        exported = {name: ran[0][name] for name in actions.EXPORTED_NAMES if name not in ("ALCF_AI_TOKEN", "METIS_ENV_TOKEN_EXPIRES")}  # gateway only
    assert fired == [True]
    assert consistent("1", exported) in (1, 2), exported


def test_exports_during_repeated_syncs_rotating_every_key_see_one_generation(tmp_path):
    remote = Remote(tmp_path / "remote-home")
    try:
        def serve(generation: int) -> None:
            remote.serve({Path(p).name: Path(p).read_text() for p in generation_files(tmp_path, generation)})

        serve(1)
        assert remote.sync().returncode == 0

        def rotate() -> None:
            for generation in range(2, ROTATIONS // 2 + 2):
                serve(generation)
                proc = remote.sync()
                assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr

        seen = exports_during(rotate, tmp_path)
    finally:
        remote.stop()
    assert len(seen) >= ROTATIONS // 2
    assert_all_consistent(seen, range(1, ROTATIONS // 2 + 2))
    cases(len(seen) + ROTATIONS // 2)
