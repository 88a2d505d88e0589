"""The store: keys in a keyring (in-memory here; real Secret Service in test_store_secret_service.py),
metadata in endpoints.yaml, all-or-nothing updates, the explicit file store and its modes."""

from __future__ import annotations

import json
import os
import stat

import keyring
import pytest
from keyring.backends import fail

from metis_env import paths
from metis_env.endpoint import parse_endpoint_file
from metis_env.errors import BusyError, StoreError, StoreUnavailableError
from metis_env.settings import load_settings, with_overrides
from metis_env.store import SERVICE, Change, KeyringSecrets, Store
from tests.conftest import ENDPOINT_1, ENDPOINT_2


def endpoint(text: str, number: int):
    return parse_endpoint_file(text, f"metis_endpoint_{number}.txt")


def rotated(text: str, new_key: str) -> str:
    lines = [f"SAMBANOVA_API_KEY={new_key}" if l.startswith("SAMBANOVA_API_KEY=") else l for l in text.splitlines()]
    return "\n".join(lines) + "\n"


def snapshot(config_dir, memory=None):
    """Everything the store keeps: every file's bytes and every keyring entry."""
    files = {}
    if config_dir.exists():
        for path in sorted(config_dir.iterdir()):
            if path.name != "sync.lock":
                files[path.name] = path.read_bytes()
    return files, dict(memory.entries) if memory is not None else None


@pytest.fixture
def store():
    return Store(load_settings())


def test_replace_all_stores_keys_in_keyring_and_the_rest_in_yaml(store, memory_keyring, env_setup):
    changes = store.replace_all([endpoint(ENDPOINT_1, 1), endpoint(ENDPOINT_2, 2)], "sync:alice@host")

    assert changes == [Change("1", "new"), Change("2", "new")]
    stored = store.endpoints()
    assert list(stored) == ["1", "2"]
    assert stored["2"].models == ("Llama-4-Maverick-17B-128E-Instruct", "Llama-3.3-70B-Instruct")
    assert store.api_key(stored["1"]) == "sk-test-one-0123456789abcdef"
    assert sorted(memory_keyring.entries.values()) == ["sk-test-one-0123456789abcdef", "sk-test-two-0123456789abcdef"]
    yaml_text = (env_setup / "endpoints.yaml").read_text()
    assert "sk-test" not in yaml_text
    assert json.loads(yaml_text)["endpoints"]["1"]["secret"] == f"1/{stored['1'].fingerprint}"


def test_config_dir_and_files_are_private_whatever_the_umask(store, env_setup):
    old = os.umask(0o000)
    try:
        with_file = Store(with_overrides(load_settings(), store="file"))
        with_file.replace_all([endpoint(ENDPOINT_1, 1)], "import")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(env_setup).st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in env_setup.iterdir()} == {
        "endpoints.yaml": 0o600,
        "keys.json": 0o600,
        "sync.lock": 0o600,
    }


def test_changes_name_what_happened_to_each_endpoint(store):
    store.replace_all([endpoint(ENDPOINT_1, 1), endpoint(ENDPOINT_2, 2)], "sync")
    fewer_models = ENDPOINT_2.replace(",Llama-3.3-70B-Instruct", "")

    changes = store.replace_all([endpoint(rotated(ENDPOINT_1, "sk-rotated-0123456789"), 1), endpoint(fewer_models, 2)], "sync")
    assert changes == [Change("1", "key rotated"), Change("2", "models changed", "-Llama-3.3-70B-Instruct")]

    assert store.replace_all([endpoint(fewer_models, 2)], "sync") == [Change("1", "removed"), Change("2", "unchanged")]


def test_a_rotated_key_replaces_the_old_keyring_entry(store, memory_keyring):
    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    store.replace_all([endpoint(rotated(ENDPOINT_1, "sk-rotated-0123456789"), 1)], "sync")

    assert list(memory_keyring.entries.values()) == ["sk-rotated-0123456789"]
    assert store.api_key(store.endpoints()["1"]) == "sk-rotated-0123456789"


def test_merge_keeps_the_endpoints_it_was_not_given(store):
    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    assert store.merge([endpoint(ENDPOINT_2, 2)], "import") == [Change("2", "new")]
    assert list(store.endpoints()) == ["1", "2"]


@pytest.mark.parametrize("fail_on_set", [1, 2])
def test_a_keyring_failure_halfway_leaves_everything_as_it_was(store, memory_keyring, env_setup, fail_on_set):
    store.replace_all([endpoint(ENDPOINT_1, 1), endpoint(ENDPOINT_2, 2)], "sync")
    before = snapshot(env_setup, memory_keyring)
    memory_keyring.fail_on_set = memory_keyring.sets + fail_on_set

    new_set = [endpoint(rotated(ENDPOINT_1, "sk-new-one-0123456789"), 1), endpoint(rotated(ENDPOINT_2, "sk-new-two-0123456789"), 2)]
    with pytest.raises(StoreError) as caught:
        store.replace_all(new_set, "sync")

    assert str(caught.value) == (
        "the OS keyring refused the change (PasswordSetError); unlock it or use the file store instead: "
        "--store file, or METIS_ENV_STORE=file, or 'store: file' in config.yaml"
    )
    assert snapshot(env_setup, memory_keyring) == before


def test_a_metadata_write_failure_leaves_everything_as_it_was(store, memory_keyring, env_setup, mocker):
    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    before = snapshot(env_setup, memory_keyring)
    mocker.patch("metis_env.store.atomic_write_text", side_effect=[None, OSError(28, "No space left on device")])

    with pytest.raises(OSError):
        store.replace_all([endpoint(rotated(ENDPOINT_1, "sk-new-0123456789abc"), 1), endpoint(ENDPOINT_2, 2)], "sync")

    assert snapshot(env_setup, memory_keyring)[1] == before[1]
    assert (env_setup / "endpoints.yaml").read_bytes() == before[0]["endpoints.yaml"]


def test_keys_left_by_a_crash_before_commit_are_cleaned_by_the_next_update(store, memory_keyring, env_setup):
    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    orphan = "1/sha256:000000000000"
    memory_keyring.entries[(SERVICE, orphan)] = "sk-orphan"
    (env_setup / "pending.json").write_text(json.dumps({"store": "keyring", "refs": [orphan]}))

    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")

    assert (SERVICE, orphan) not in memory_keyring.entries
    assert not (env_setup / "pending.json").exists()


def test_a_lost_keyring_entry_is_written_again_by_the_next_sync(store, memory_keyring):
    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    memory_keyring.entries.clear()
    assert store.replace_all([endpoint(ENDPOINT_1, 1)], "sync") == [Change("1", "unchanged")]
    assert store.api_key(store.endpoints()["1"]) == "sk-test-one-0123456789abcdef"


def test_forget_removes_keys_and_metadata(store, memory_keyring):
    store.replace_all([endpoint(ENDPOINT_1, 1), endpoint(ENDPOINT_2, 2)], "sync")
    assert store.forget(["2"]) == [Change("2", "removed")]
    assert list(store.endpoints()) == ["1"]
    assert list(memory_keyring.entries.values()) == ["sk-test-one-0123456789abcdef"]
    store.forget(None)
    assert store.endpoints() == {}
    assert memory_keyring.entries == {}


def test_the_fail_backend_gives_one_line_naming_the_file_store(store):
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(StoreUnavailableError) as caught:
        store.check_writable()
    assert str(caught.value) == (
        "no OS keyring is available here (usual on HPC nodes, containers and CI); use the file store instead: "
        "--store file, or METIS_ENV_STORE=file, or 'store: file' in config.yaml"
    )


def test_a_keyring_that_never_answers_times_out():
    class Hanging(keyring.backend.KeyringBackend):
        priority = 1

        def get_password(self, service, username):
            import time

            time.sleep(5)

        set_password = delete_password = get_password

    keyring.set_keyring(Hanging())
    with pytest.raises(StoreUnavailableError) as caught:
        KeyringSecrets(timeout=0.2).get("1/x")
    assert str(caught.value).startswith("the OS keyring did not answer within 0.2 s")


def test_a_second_writer_is_refused_while_the_lock_is_held(store):
    other = Store(load_settings())
    with store.locked():
        with pytest.raises(BusyError):
            other.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    other.replace_all([endpoint(ENDPOINT_1, 1)], "sync")


def test_the_file_store_refuses_a_keys_file_readable_by_others(env_setup):
    file_store = Store(with_overrides(load_settings(), store="file"))
    file_store.replace_all([endpoint(ENDPOINT_1, 1)], "import")
    keys = paths.keys_file(env_setup)
    os.chmod(keys, 0o644)
    with pytest.raises(StoreError) as caught:
        file_store.api_key(file_store.endpoints()["1"])
    assert str(caught.value) == f"{keys} is readable by other users (mode 644); run: chmod 600 {keys}"


def test_a_symlinked_metadata_file_is_refused(env_setup, tmp_path, store):
    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    elsewhere = tmp_path / "elsewhere.yaml"
    os.replace(env_setup / "endpoints.yaml", elsewhere)
    os.symlink(elsewhere, env_setup / "endpoints.yaml")
    with pytest.raises(StoreError) as caught:
        store.endpoints()
    assert str(caught.value) == f"{env_setup / 'endpoints.yaml'} is a symbolic link; refusing to read it (remove the link)"


def test_a_symlinked_config_dir_is_refused(env_setup, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.symlink(real, env_setup)
    with pytest.raises(StoreError) as caught:
        Store(load_settings()).replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    assert str(caught.value) == f"{env_setup} is a symbolic link; refusing to keep credentials there (remove the link)"


def test_a_hand_edited_yaml_metadata_file_still_reads(env_setup, store):
    store.replace_all([endpoint(ENDPOINT_1, 1)], "sync")
    data = json.loads((env_setup / "endpoints.yaml").read_text())
    record = data["endpoints"]["1"]
    yaml_text = "version: 1\nendpoints:\n  '1':\n" + "".join(
        f"    {k}: {json.dumps(v)}\n" for k, v in record.items()
    )
    (env_setup / "endpoints.yaml").write_text(yaml_text)
    assert store.endpoints()["1"].models == ("DeepSeek-R1",)


# --- sync and import change the endpoint files' endpoints only ------------------------------------


def logged_in_store(store):
    """A store holding a gateway login and its endpoint ``metis``, as `metis-env login` leaves it."""
    import time

    from metis_env.sources.gateway.http import GatewayEndpoint
    from metis_env.sources.gateway.tokens import save_login

    data = {"access_token": "gw-access-token", "refresh_token": "gw-refresh-token", "expires_at_seconds": int(time.time()) + 3600}
    save_login(store, store.settings, data, "alice@example.org", [GatewayEndpoint("metis", "https://gw.example/metis/v1/", ("m1",), "api")])
    return store


@pytest.mark.parametrize("action, message", [
    ("import", "endpoint metis is a gateway endpoint (from metis-env login); import it with --id ANOTHER_NAME, "
               "or run metis-env logout first to remove the gateway's endpoints"),
    ("sync", "endpoint metis is a gateway endpoint (from metis-env login); rename the endpoint file, "
             "or run metis-env logout first to remove the gateway's endpoints"),
    ("sync --dry-run", "endpoint metis is a gateway endpoint (from metis-env login); rename the endpoint file, "
                       "or run metis-env logout first to remove the gateway's endpoints"),
])
def test_an_endpoint_file_never_replaces_a_gateway_endpoint(store, memory_keyring, env_setup, action, message):
    from metis_env.errors import UsageError

    logged_in_store(store)
    before = snapshot(env_setup, memory_keyring)
    file = parse_endpoint_file(ENDPOINT_1, "<stdin>", "metis")
    run = {"import": lambda: store.merge([file], "import"), "sync": lambda: store.replace_all([file], "sync:alice@host"),
           "sync --dry-run": lambda: store.preview_replace_all([file])}[action]
    with pytest.raises(UsageError) as caught:
        run()
    assert (str(caught.value), snapshot(env_setup, memory_keyring)) == (message, before)


# --- store move ----------------------------------------------------------------------------------


def keys_json(config_dir) -> dict:
    path = config_dir / "keys.json"
    return json.loads(path.read_text())["keys"] if path.exists() else {}


def where_stored(store) -> dict:
    return {i: s.store for i, s in store.endpoints().items()}


def test_store_move_carries_keys_and_tokens_and_leaves_no_copy(store, memory_keyring, env_setup):
    from metis_env.commands.store_move import move_keys
    from metis_env.sources.gateway.tokens import read_state

    store.merge([endpoint(ENDPOINT_1, 1), endpoint(ENDPOINT_2, 2)], "import")
    logged_in_store(store)
    refs = {i: s.secret_ref for i, s in store.endpoints().items()}
    tokens = {read_state(store).access: "gw-access-token", read_state(store).refresh: "gw-refresh-token"}

    assert move_keys(store, "file", ["2"]) == [Change("2", "moved")]
    assert (where_stored(store), keys_json(env_setup)) == (
        {"1": "keyring", "2": "file", "metis": "keyring"}, {refs["2"]: "sk-test-two-0123456789abcdef"})
    assert move_keys(store, "file", ["metis"]) == [Change("metis", "moved")]
    assert (where_stored(store), read_state(store).store, keys_json(env_setup)) == (
        {"1": "keyring", "2": "file", "metis": "file"}, "file", {refs["2"]: "sk-test-two-0123456789abcdef", **tokens})
    assert move_keys(store, "file") == [Change("1", "moved"), Change("2", "unchanged"), Change("metis", "unchanged")]
    assert (memory_keyring.entries, [store.api_key(s) for s in store.endpoints().values()]) == (
        {}, ["sk-test-one-0123456789abcdef", "sk-test-two-0123456789abcdef", "gw-access-token"])
    assert move_keys(store, "keyring") == [Change("1", "moved"), Change("2", "moved"), Change("metis", "moved")]
    assert (where_stored(store), read_state(store).store, keys_json(env_setup)) == (
        {"1": "keyring", "2": "keyring", "metis": "keyring"}, "keyring", {})
    assert sorted(memory_keyring.entries.values()) == sorted(
        ["sk-test-one-0123456789abcdef", "sk-test-two-0123456789abcdef", "gw-access-token", "gw-refresh-token"])


@pytest.mark.parametrize("case, error", [
    ("no such endpoint", "no endpoint '9' is stored; metis-env list shows what is"),
    ("no keyring to move into", "no OS keyring is available here (usual on HPC nodes, containers and CI); use the "
                                "file store instead: --store file, or METIS_ENV_STORE=file, or 'store: file' in config.yaml"),
])
def test_store_move_that_fails_changes_nothing(store, memory_keyring, env_setup, case, error):
    from metis_env.errors import MetisEnvError
    from metis_env.commands.store_move import move_keys

    store = Store(with_overrides(load_settings(), store="file"))
    store.merge([endpoint(ENDPOINT_1, 1)], "import")
    before = snapshot(env_setup, memory_keyring)
    if case == "no keyring to move into":
        keyring.set_keyring(fail.Keyring())
    with pytest.raises(MetisEnvError) as caught:
        move_keys(store, "keyring", ["9"] if case == "no such endpoint" else [])
    assert (str(caught.value), snapshot(env_setup, memory_keyring)) == (error, before)
