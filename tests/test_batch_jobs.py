"""docs/batch-jobs.md: many ranks' `metis-env run` on one file store while a sync or import rotates
every key. No rank fails, and each gets one whole generation (base URL, key and model of one update),
never a mix of two."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from metis_env.commands import endpoints
from metis_env.settings import load_settings
from metis_env.store import open_store
from tests.conftest import REPO

RANKS = 400
ROTATE_EVERY = 0.25  # seconds between imports: dozens of rotations while the ranks run
CHILD = 'printf %s "$OPENAI_BASE_URL $OPENAI_API_KEY $MODEL_NAME" | sha256sum'


def generation(number: int) -> tuple[str, str, str]:
    return (
        f"https://metis.alcf.anl.gov/generation-{number}/v1/",
        f"sk-generation-{number:03d}-0123456789abcdef",
        f"Model-of-generation-{number}",
    )


def digest(number: int) -> str:
    return hashlib.sha256(" ".join(generation(number)).encode()).hexdigest()


def write_generation(folder, number: int) -> str:
    base_url, key, model = generation(number)
    path = folder / "metis_endpoint_1.txt"
    path.write_text(f"BASE_URL={base_url}\nSAMBANOVA_API_KEY={key}\nMODELS={model}\n")
    return str(path)


def test_400_ranks_read_one_store_while_every_key_rotates(file_store, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    metis = [sys.executable, "-m", "metis_env"]
    assert subprocess.run([*metis, "import", write_generation(tmp_path, 0)], env=env, capture_output=True).returncode == 0

    written = {0}
    rotations: list[tuple[int, int, bytes]] = []  # (generation, exit code, stderr) of each import
    readers_done = threading.Event()

    def rotate_until_the_ranks_are_done() -> None:
        number = 0
        while not readers_done.wait(ROTATE_EVERY):
            number += 1
            # What `metis-env import` runs, in-process: a CLI import starved of CPU by 400 ranks on two
            # cores would rotate only a couple of times.
            try:
                endpoints.import_files(open_store(load_settings()), [write_generation(tmp_path, number)], None)
            except Exception as exc:
                rotations.append((number, 1, repr(exc).encode()))
            else:
                rotations.append((number, 0, b""))
                written.add(number)

    def rank(_index: int) -> tuple[int, bytes, bytes]:
        proc = subprocess.run([*metis, "run", "1", "--", "sh", "-c", CHILD], env=env, capture_output=True, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr

    rotator = threading.Thread(target=rotate_until_the_ranks_are_done)
    started = time.monotonic()
    rotator.start()
    try:
        with ThreadPoolExecutor(max_workers=RANKS) as pool:  # all 400 at once (~1 GB at the peak)
            results = list(pool.map(rank, range(RANKS)))
    finally:
        readers_done.set()
        rotator.join()
    elapsed = time.monotonic() - started

    failures = [r for r in results if r[0] != 0 or r[2] != b""]
    seen = {r[1].split(b" ")[0].decode() for r in results}
    generations = {digest(n): n for n in written}
    assert (failures, [r for r in rotations if r[1] != 0]) == ([], [])
    assert sorted(seen - set(generations)) == []  # every digest is one whole generation
    # The rotations overlapped the ranks: several generations were handed out.
    assert (len(rotations) >= 5, len({generations[d] for d in seen}) >= 2) == (True, True), (len(rotations), elapsed)


def test_a_child_forked_during_an_import_does_not_keep_the_lock(file_store, tmp_path, monkeypatch):
    """Found by the test above: a writer's child forked before its exec (or by multiprocessing) holds a
    copy of the lock's descriptor; the next import must not be refused as busy because of it."""
    import signal

    from metis_env.store import FileSecrets

    real_set_many = FileSecrets.set_many
    children = []

    def set_many_and_fork(self, items):
        pid = os.fork()
        if pid == 0:  # a child that lives on with the parent's descriptors
            time.sleep(30)
            os._exit(0)
        children.append(pid)
        real_set_many(self, items)

    monkeypatch.setattr(FileSecrets, "set_many", set_many_and_fork)
    try:
        endpoints.import_files(open_store(load_settings()), [write_generation(tmp_path, 1)], None)
        monkeypatch.setattr(FileSecrets, "set_many", real_set_many)
        changes = endpoints.import_files(open_store(load_settings()), [write_generation(tmp_path, 2)], None)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert [(c.id, c.status) for c in changes] == [("1", "key rotated")]
