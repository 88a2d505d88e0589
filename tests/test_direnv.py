"""direnv's `use metis`, with the real direnv: the library installed by `metis-env hook direnv --install`."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from metis_env import paths
from tests._shells import HOSTILE_KEY, SHELL_DIR, endpoint_text, need, run, shell_env, write_metis_wrapper
from tests.conftest import exported, metis

ANSI = re.compile(rb"\x1b\[[0-9;]*m")
LOADED = exported("https://metis.alcf.anl.gov/v2/", HOSTILE_KEY, "Llama-3.3-70B-Instruct", "2")
MODELS_2 = "Llama-4-Maverick-17B-128E-Instruct,Llama-3.3-70B-Instruct"


class Direnv:
    """direnv with its config, data and allow lists in the test's folders, metis-env's library installed."""

    def __init__(self, tmp_path: Path):
        need("direnv")
        self.tmp = tmp_path
        self.files = tmp_path / "endpoint-files"
        self.files.mkdir()
        self.env = shell_env(
            write_metis_wrapper(tmp_path / "bin").parent,
            XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
            XDG_DATA_HOME=str(tmp_path / "xdg-data"),
            XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        )
        for name in [n for n in self.env if n.startswith("DIRENV_")]:
            del self.env[name]
        installed = metis("hook", "direnv", "--install", env=self.env)
        assert installed.returncode == 0, installed.stderr

    def store(self, endpoint_id: str, key: str, models: str, url: str) -> None:
        path = self.files / f"metis_endpoint_{endpoint_id}.txt"
        path.write_text(endpoint_text(key, models=models, url=url))
        result = metis("import", str(path), env=self.env)
        assert result.returncode == 0, result.stderr

    def project(self, envrc: str) -> Path:
        folder = self.tmp / f"project-{len(list(self.tmp.glob('project-*')))}"
        folder.mkdir()
        (folder / ".envrc").write_text(envrc)
        assert run([need("direnv"), "allow", str(folder)], self.env).returncode == 0
        return folder

    def export(self, folder: Path, env: dict[str, str]) -> tuple[int, dict[str, str | None], list[str]]:
        """What direnv would change in a shell with env, entering folder (an empty dict: nothing)."""
        result = run([need("direnv"), "export", "json"], env, cwd=folder)
        changes = json.loads(result.stdout) if result.stdout.strip() else {}
        return result.returncode, changes, ANSI.sub(b"", result.stderr).decode().splitlines()


@pytest.fixture
def direnv(tmp_path, file_store):
    d = Direnv(tmp_path)
    d.store("1", "sk-one", "DeepSeek-R1", "https://metis.alcf.anl.gov/v1/")
    d.store("2", HOSTILE_KEY, MODELS_2, "https://metis.alcf.anl.gov/v2/")
    return d


def ours(changes: dict) -> dict:
    return {k: v for k, v in changes.items() if not k.startswith("DIRENV_")}


def test_use_metis_loads_the_endpoint_and_model(direnv):
    folder = direnv.project("use metis 2 --model Llama-3.3-70B-Instruct\n")
    code, changes, log = direnv.export(folder, direnv.env)
    assert (code, ours(changes)) == (0, LOADED)
    assert "direnv: using metis 2 --model Llama-3.3-70B-Instruct" in log


def test_direnv_exec_shows_the_variables(direnv):
    folder = direnv.project("use metis 2 --model Llama-3.3-70B-Instruct\n")
    dump = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {sorted(LOADED)!r}}}))"
    result = run([need("direnv"), "exec", str(folder), sys.executable, "-c", dump], direnv.env)
    assert (result.returncode, json.loads(result.stdout)) == (0, LOADED)


def applied(env: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """env after a shell applied direnv's changes (None: unset)."""
    result = {**env, **{k: v for k, v in changes.items() if v is not None}}
    return {k: v for k, v in result.items() if changes.get(k, "") is not None}


def move_mtime_on(path: str) -> None:
    later = os.stat(path).st_mtime + 2  # direnv compares mtimes to the second
    os.utime(path, (later, later))


def test_a_new_sync_reloads_the_directory(direnv):
    folder = direnv.project("use metis 2 --model Llama-3.3-70B-Instruct\n")
    code, changes, _log = direnv.export(folder, direnv.env)
    assert code == 0
    inside = applied(direnv.env, changes)
    assert direnv.export(folder, inside)[:2] == (0, {})  # nothing changed: nothing to do

    direnv.store("2", "sk-rotated", MODELS_2, "https://metis.alcf.anl.gov/v2/")
    move_mtime_on(paths.metadata_file(Path(os.environ["METIS_ENV_CONFIG_DIR"])))
    code, changes, _log = direnv.export(folder, inside)
    assert (code, ours(changes)) == (0, {"OPENAI_API_KEY": "sk-rotated", "SAMBANOVA_API_KEY": "sk-rotated"})
    assert {k: applied(inside, changes)[k] for k in LOADED} == {**LOADED, "OPENAI_API_KEY": "sk-rotated", "SAMBANOVA_API_KEY": "sk-rotated"}


def test_after_a_failure_direnv_reload_picks_up_the_fix(direnv):
    folder = direnv.project("use metis 3\n")
    code, changes, _log = direnv.export(folder, direnv.env)
    assert (code, ours(changes)) == (1, {})
    outside = applied(direnv.env, changes)
    direnv.store("3", "sk-three", "DeepSeek-R1", "https://metis.alcf.anl.gov/v3/")
    move_mtime_on(folder / ".envrc")  # what direnv reload does
    code, changes, _log = direnv.export(folder, outside)
    assert (code, ours(changes)) == (0, exported("https://metis.alcf.anl.gov/v3/", "sk-three", "DeepSeek-R1", "3"))


def test_an_unknown_endpoint_fails_the_envrc_and_sets_nothing(direnv):
    folder = direnv.project("use metis 9\nexport AFTER_USE=1\n")
    code, changes, log = direnv.export(folder, direnv.env)
    assert (code, ours(changes)) == (1, {})
    assert log[-3:] == [
        "metis-env: error: no endpoint or model '9' is stored; stored endpoints: 1, 2",
        "direnv: use metis: metis-env export 9 failed (status 3); nothing loaded",
        "direnv: error exit status 1",
    ]


def test_metis_env_missing_fails_the_envrc(direnv):
    folder = direnv.project("use metis 2\nexport AFTER_USE=1\n")
    env = {**direnv.env, "PATH": str(Path(need("direnv")).parent) + os.pathsep + "/bin"}
    (direnv.tmp / "bin" / "metis-env").unlink()
    code, changes, log = direnv.export(folder, env)
    assert (code, ours(changes)) == (1, {})
    assert log[-2:] == [
        "direnv: use metis: metis-env is not on PATH (install it: pipx install metis-env); nothing loaded",
        "direnv: error exit status 1",
    ]


# use_metis finds the metadata file without a second metis-env start: the same lookup as paths.py.
@pytest.mark.parametrize(
    "settings",
    [
        {"METIS_ENV_CONFIG_DIR": "/srv/metis"},
        {"METIS_ENV_CONFIG_DIR": "/srv/metis/"},
        {"METIS_ENV_CONFIG_DIR": "~/custom"},
        {"METIS_ENV_CONFIG_DIR": "~"},
        {"METIS_ENV_CONFIG_DIR": "relative/dir"},
        {"XDG_CONFIG_HOME": "/xdg"},
        {"XDG_CONFIG_HOME": "not-absolute"},
        {"METIS_ENV_CONFIG_DIR": "/explicit", "XDG_CONFIG_HOME": "/xdg"},
        {},
    ],
)
def test_use_metis_watches_the_metadata_file_paths_py_names(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")  # expanduser reads the process's own HOME
    env = {"PATH": os.environ["PATH"], "HOME": "/home/someone", **settings}
    stubs = "watch_file() { printf '%s\\n' \"$@\"; }; has() { return 0; }; log_error() { :; }; metis-env() { echo true; }"
    result = run([need("bash"), "--norc", "-c", f"{stubs}; source '{SHELL_DIR / 'direnvrc'}'; use_metis 1"], env, cwd=tmp_path)
    directory = paths.config_dir(env)
    expected = [paths.metadata_file(directory), paths.config_file(directory)]
    assert result.returncode == 0
    assert [os.path.normpath(line) for line in result.stdout.decode().splitlines()] == [os.path.normpath(p) for p in expected]
