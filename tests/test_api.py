"""The Python API (docs/python.md): environ, load, openai_client, as a script uses them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

import metis_env
from metis_env import api, credentials
from metis_env.commands import endpoints
from metis_env.errors import MetisEnvError, NotFoundError, StoreError, UsageError
from metis_env.settings import load_settings
from metis_env.store import open_store
from metis_env.testing.openai_server import OpenAIStubServer
from tests.conftest import ENDPOINT_1, ENDPOINT_2, REPO, metis

KEY_1 = "sk-test-one-0123456789abcdef"
KEY_2 = "sk-test-two-0123456789abcdef"
ENV_1 = {
    "OPENAI_BASE_URL": "https://metis.alcf.anl.gov/v1/",
    "OPENAI_API_BASE": "https://metis.alcf.anl.gov/v1/",
    "OPENAI_API_KEY": KEY_1,
    "MODEL_NAME": "DeepSeek-R1",
    "SAMBANOVA_API_KEY": KEY_1,
    "SAMBANOVA_API_BASE": "https://metis.alcf.anl.gov/v1/",
    "SAMBA_NOVA_BASE_URL": "https://metis.alcf.anl.gov/v1/",
    "OPENAI_AGENTS_DISABLE_TRACING": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "METIS_ENV_ENDPOINT": "1",
}


@pytest.fixture(autouse=True)
def restore_environ():
    """load() writes os.environ: leave it to the next test as this one found it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def two_endpoints(file_store, endpoint_files):
    assert metis("import", *map(str, endpoint_files)).returncode == 0


def store_endpoint(tmp_path, text: str, number: int = 1) -> None:
    """``metis-env import`` of one endpoint file, in-process (a rotation when the key differs)."""
    path = tmp_path / f"metis_endpoint_{number}.txt"
    path.write_text(text)
    settings = load_settings()
    endpoints.import_files(open_store(settings), [str(path)], None)


def endpoint_text(base_url: str, key: str, models: str = "DeepSeek-R1") -> str:
    return f"BASE_URL={base_url}\nSAMBANOVA_API_KEY={key}\nMODELS={models}\n"


# --- environ: what export sets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint, model, export_args",
    [
        (1, None, ["1"]),
        ("1", None, ["1"]),
        ("metis_endpoint_2", None, ["metis_endpoint_2"]),
        ("DeepSeek-R1", None, ["DeepSeek-R1"]),
        (2, "Llama-3.3-70B-Instruct", ["2", "--model", "Llama-3.3-70B-Instruct"]),
        (None, "Llama-3.3-70B-Instruct", ["--model", "Llama-3.3-70B-Instruct"]),
    ],
)
def test_environ_is_what_export_prints(two_endpoints, endpoint, model, export_args):
    exported = metis("export", *export_args, "--shell", "json")
    assert exported.returncode == 0
    assert metis_env.environ(endpoint, model) == json.loads(exported.stdout)


def test_environ_of_endpoint_1(two_endpoints):
    assert metis_env.environ(1) == ENV_1


def test_environ_uses_the_default_endpoint(two_endpoints):
    assert metis("config", "set", "default_endpoint", "1").returncode == 0
    assert metis_env.environ() == ENV_1


def test_environ_has_the_aliases_export_has(two_endpoints):
    assert metis("config", "set", "aliases", "GROQ_API_KEY=OPENAI_API_KEY").returncode == 0
    assert metis_env.environ(1) == {**ENV_1, "GROQ_API_KEY": KEY_1} == json.loads(metis("export", "1", "--shell", "json").stdout)
    assert repr(metis_env.environ(1)).count("sk-…cdef") == 3


def test_environ_changes_nothing(two_endpoints):
    before = dict(os.environ)
    metis_env.environ(1)
    assert dict(os.environ) == before


def test_the_repr_masks_the_key_so_a_notebook_never_shows_it(two_endpoints):
    env = metis_env.environ(1)
    assert (repr(env), str(env), env["OPENAI_API_KEY"]) == (
        "Environment({'OPENAI_BASE_URL': 'https://metis.alcf.anl.gov/v1/', 'OPENAI_API_BASE': 'https://metis.alcf.anl.gov/v1/', "
        "'OPENAI_API_KEY': 'sk-…cdef', 'MODEL_NAME': 'DeepSeek-R1', 'SAMBANOVA_API_KEY': 'sk-…cdef', "
        "'SAMBANOVA_API_BASE': 'https://metis.alcf.anl.gov/v1/', 'SAMBA_NOVA_BASE_URL': 'https://metis.alcf.anl.gov/v1/', "
        "'OPENAI_AGENTS_DISABLE_TRACING': '1', 'LITELLM_LOCAL_MODEL_COST_MAP': 'True', 'METIS_ENV_ENDPOINT': '1'})",
        repr(env),
        KEY_1,
    )
    assert json.loads(json.dumps(env)) == ENV_1


def test_a_stale_endpoint_warns_on_stderr_as_export_does(two_endpoints, capfd):
    metis("config", "set", "stale_after_days", "0.00001")  # 0.9 s; synced_at has whole seconds
    time.sleep(2)
    capfd.readouterr()
    metis_env.environ(1)
    exported = metis("export", "1")
    assert capfd.readouterr() == ("", exported.stderr.decode())
    assert exported.stderr.decode().startswith("metis-env: warning: endpoint 1 was last synced")


# --- load: into os.environ, as python-dotenv's load_dotenv --------------------------------------------


def test_load_sets_the_variables_and_returns_them(two_endpoints, monkeypatch):
    monkeypatch.setenv("MODEL_NAME", "mine")
    assert metis_env.load(1) == ENV_1
    assert {name: os.environ[name] for name in ENV_1} == ENV_1


def test_load_without_override_keeps_what_is_set_and_returns_only_what_it_set(two_endpoints, monkeypatch):
    monkeypatch.setenv("MODEL_NAME", "mine")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1/")
    set_now = metis_env.load(1, override=False)
    assert set_now == {k: v for k, v in ENV_1.items() if k not in ("MODEL_NAME", "OPENAI_BASE_URL")}
    assert (os.environ["MODEL_NAME"], os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]) == (
        "mine",
        "http://localhost:8000/v1/",
        KEY_1,
    )


def test_load_matches_load_dotenv_on_exports_dotenv_file(two_endpoints, tmp_path, monkeypatch):
    import dotenv

    dotenv_file = tmp_path / ".env"
    dotenv_file.write_bytes(metis("export", "2", "--shell", "dotenv").stdout)
    assert dotenv.load_dotenv(dotenv_file, override=True)
    from_dotenv = {name: os.environ.pop(name) for name in ENV_1}
    assert metis_env.load(2) == from_dotenv


# --- errors: the CLI's one line, as an exception ----------------------------------------------------


@pytest.mark.parametrize(
    "call, export_args",
    [
        (lambda: metis_env.environ(7), ["7"]),
        (lambda: metis_env.environ("DeepSeek-R2"), ["DeepSeek-R2"]),
        (lambda: metis_env.environ(2, "Llama-3.3-70B-Instruc"), ["2", "--model", "Llama-3.3-70B-Instruc"]),
        (lambda: metis_env.environ(), []),
        (lambda: metis_env.load(), []),
        (lambda: metis_env.openai_client(9), ["9"]),
    ],
)
def test_errors_are_the_exceptions_behind_the_clis_lines(two_endpoints, call, export_args):
    exported = metis("export", *export_args)
    with pytest.raises(MetisEnvError) as caught:
        call()
    said = exported.stderr.decode().replace("(metis-env export 1)", "(metis_env.load('1'))")  # the hint in Python's words
    assert (caught.value.exit_code, f"metis-env: error: {caught.value}\n") == (exported.returncode, said)


def test_load_before_any_sync_says_what_export_says(file_store):
    exported = metis("export", "1")
    with pytest.raises(NotFoundError) as caught:
        metis_env.load(1)
    assert (f"metis-env: error: {caught.value}\n", exported.stderr.decode(), exported.returncode) == (
        "metis-env: error: no endpoints are stored yet; run metis-env sync (endpoint files over SSH) or metis-env login (the ALCF gateway), or metis-env import FILE\n",
        "metis-env: error: no endpoints are stored yet; run metis-env sync (endpoint files over SSH) or metis-env login (the ALCF gateway), or metis-env import FILE\n",
        3,
    )
    assert "OPENAI_API_KEY" not in os.environ


def test_a_keyring_that_cannot_be_read_is_the_one_line_error(tmp_path, monkeypatch):
    import keyring
    from keyring.backends import fail

    store_endpoint(tmp_path, ENDPOINT_1)  # into the in-memory keyring
    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(MetisEnvError) as caught:
        metis_env.environ(1)
    assert (type(caught.value).__name__, str(caught.value)) == (
        "StoreUnavailableError",
        "the key of endpoint 1 is in the OS keyring, and no OS keyring is available here (usual on HPC nodes, "
        "containers and CI): unlock the keyring (then metis-env store move --to file makes the keys usable without "
        "it), or fetch the key again into the file store (metis-env --store file sync, import or login)",
    )


def test_an_endpoint_of_the_wrong_type_is_a_usage_error(two_endpoints):
    with pytest.raises(UsageError) as caught:
        metis_env.environ(1.0)  # type: ignore[arg-type]
    assert str(caught.value) == "the endpoint must be a number or a name such as 1 or 'metis_endpoint_1', not float"


def test_without_openai_openai_client_names_the_extra(two_endpoints, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # what `import openai` meets when it is not installed
    with pytest.raises(UsageError) as caught:
        metis_env.openai_client(1)
    assert str(caught.value) == "metis_env.openai_client needs the openai package; install it: pip install openai"


def test_no_traceback_of_a_failed_request_holds_the_key(file_store, tmp_path):
    store_endpoint(tmp_path, ENDPOINT_1)
    client = metis_env.openai_client(1, max_retries=0)
    store_endpoint(tmp_path, ENDPOINT_1.replace(KEY_1, KEY_2))  # a rotation: the client must read again ...
    (tmp_path / "config" / "keys.json").chmod(0o644)  # ... from a store that now refuses to be read
    with pytest.raises(StoreError) as caught:
        client.models.list()
    text = "".join(traceback.format_exception(type(caught.value), caught.value, caught.value.__traceback__))
    assert (KEY_1 in text, KEY_2 in text, "readable by other users" in text) == (False, False, True)


# --- openai_client: the seed's example, and a key that stays current -------------------------------------

SEED_EXAMPLE = (Path(__file__).resolve().parent.parent / "examples" / "chat_completion.py").read_text()
"""ALCF's seed example, as the repository ships it in examples/."""


@pytest.fixture
def stub():
    server = OpenAIStubServer(KEY_1, ["DeepSeek-R1"], reply="Hello from endpoint 1.")
    server.start()
    yield server
    server.stop()


def test_the_seed_example_after_load(file_store, tmp_path, stub, monkeypatch):
    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_1))
    metis_env.load(1)
    monkeypatch.setattr(sys, "argv", ["chat_completion.py", "What is an extinction vortex?"])
    out = subprocess.run(
        [sys.executable, "-c", SEED_EXAMPLE, "What is an extinction vortex?"], capture_output=True, timeout=60
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, b"Hello from endpoint 1.\n", b"")


def test_the_seed_example_through_openai_client(file_store, tmp_path, stub):
    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_1))
    client = metis_env.openai_client(1)
    modelname = metis_env.environ(1)["MODEL_NAME"]
    response = client.chat.completions.create(
        model=modelname, messages=[{"role": "user", "content": "What is an extinction vortex?"}], temperature=0.1, top_p=0.1
    )
    assert (str(client.base_url), response.choices[0].message.content) == (stub.base_url + "/", "Hello from endpoint 1.")
    assert [(r.method, r.path, r.authorized) for r in stub.requests] == [("POST", "/v1/chat/completions", True)]


def test_openai_client_passes_other_arguments_on(file_store, tmp_path, stub):
    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_1))
    client = metis_env.openai_client(1, timeout=7.0, max_retries=0)
    assert (client.timeout, client.max_retries) == (7.0, 0)


# Both ways of keeping the key current: openai's own key provider (openai 1.106 and later: what the
# installed openai gets) and, for an older openai, a subclass whose api_key is read through the same
# CurrentKey (forced here; also run by hand against openai 1.100.0).
@pytest.mark.parametrize("use_provider", [None, False], ids=["as-installed", "subclass"])
def test_a_rotated_key_is_picked_up_without_rebuilding_the_client(file_store, tmp_path, stub, use_provider):
    import openai

    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_1))
    client = api._build_client(openai.OpenAI, 1, None, {"max_retries": 0}, use_provider=use_provider)
    first = [m.id for m in client.models.list()]
    stub.set_api_key(KEY_2)  # ALCF rotates the key ...
    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_2))  # ... and a sync brings it here
    second = [m.id for m in client.models.list()]
    assert (first, second) == (["DeepSeek-R1"], ["DeepSeek-R1"])
    assert [r.authorized for r in stub.requests] == [True, True]
    assert isinstance(client, openai.OpenAI)


def test_a_moved_endpoint_takes_the_client_with_its_new_key(file_store, tmp_path, stub):
    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_1))
    client = metis_env.openai_client(1, max_retries=0)
    client.models.list()
    with OpenAIStubServer(KEY_2, ["DeepSeek-R1"]) as moved_url:
        store_endpoint(tmp_path, endpoint_text(moved_url + "/", KEY_2))
        assert [m.id for m in client.models.list()] == ["DeepSeek-R1"]
        assert str(client.base_url) == moved_url + "/"
    assert len(stub.requests) == 1


def test_the_async_client_keeps_its_key_current_too(file_store, tmp_path, stub):
    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_1))
    client = metis_env.async_openai_client(1, max_retries=0)

    async def two_requests():
        first = await client.models.list()
        stub.set_api_key(KEY_2)
        store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_2))
        second = await client.models.list()
        return [m.id for m in first.data], [m.id for m in second.data]

    assert asyncio.run(two_requests()) == (["DeepSeek-R1"], ["DeepSeek-R1"])
    assert [r.authorized for r in stub.requests] == [True, True]


def test_a_gateway_token_is_read_again_before_it_expires(file_store, tmp_path, stub, monkeypatch):
    """select_with_key is our own seam: it stands in for the gateway source, handing out tokens that
    live 1.5 s past a 1 s refresh margin, as the gateway hands out tokens valid past its margin (the
    real gateway source: tests/test_api_gateway.py)."""
    store_endpoint(tmp_path, endpoint_text(stub.base_url + "/", KEY_1))
    real_select = credentials.select_with_key
    handed_out = []

    def select_with_token(store, spec, model, settings, command="export"):
        selection, _key = real_select(store, spec, model, settings, command)
        token = f"gateway-token-{len(handed_out) + 1:02d}-0123456789"
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2.5))
        handed_out.append(token)
        stub.set_api_key(token)  # the gateway accepts the newest token
        return selection._replace(expires_at=expires), token

    monkeypatch.setattr(credentials, "select_with_key", select_with_token)
    monkeypatch.setenv("METIS_ENV_TOKEN_REFRESH_MARGIN", "1")
    client = metis_env.openai_client(1, max_retries=0)
    client.models.list()
    client.models.list()  # the token is good for 1.5 s more: not read again
    time.sleep(2.6)  # inside the margin now
    client.models.list()
    assert (handed_out, [r.authorized for r in stub.requests]) == (
        ["gateway-token-01-0123456789", "gateway-token-02-0123456789"],
        [True, True, True],
    )


# --- cheap to import, typed -------------------------------------------------------------------------------

IMPORT_PROBE = """
import site, sys
sys.path.extend(site.getsitepackages())  # -S: no .pth files, whose hooks import pathlib and more
before = set(sys.modules)
import metis_env
after_import = sorted(set(sys.modules) - before)
metis_env.environ(1)
heavy = ("click", "yaml", "keyring", "paramiko", "globus_sdk", "openai", "IPython", "dataclasses", "pathlib", "threading")
print(after_import, sorted(m for m in heavy if m in sys.modules))
"""


def test_import_metis_env_and_environ_import_nothing_heavy(two_endpoints):
    out = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_PROBE],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert (out.returncode, out.stdout.decode(), out.stderr) == (0, "['metis_env'] []\n", b"")


def test_the_names_are_exported_and_typed():
    from metis_env import errors

    family = sorted(cls.__name__ for cls in errors.EXIT_CODES.values())
    assert (sorted(metis_env.__all__), metis_env.MetisEnvError is MetisEnvError, metis_env.load is api.load) == (
        sorted(["async_openai_client", "environ", "load", "load_ipython_extension", "openai_client", "unload", *family]),
        True,
        True,
    )
    assert (REPO / "metis_env" / "py.typed").is_file()
    with pytest.raises(AttributeError):
        metis_env.no_such_name  # noqa: B018


def test_every_error_class_is_importable_from_the_package():
    from metis_env import errors

    family = {cls.__name__ for cls in errors.EXIT_CODES.values()}
    assert ({name for name in family if getattr(metis_env, name) is getattr(errors, name)}, family <= set(metis_env.__all__)) == (family, True)
