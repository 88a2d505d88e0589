"""TAB completion through click's own protocol (what the hooks' completion functions speak), in the
bash, zsh and fish forms: endpoint ids and model names come from endpoints.yaml alone."""

from __future__ import annotations

import pytest

from metis_env.commands import endpoints
from metis_env.settings import load_settings
from metis_env.store import open_store
from tests.conftest import metis


@pytest.fixture
def stored(endpoint_files):
    """Endpoints 1 and 2 stored in-process (in-memory keyring): subprocesses get keyring's `fail`
    backend, so a completion that touched the keyring would come back empty."""
    endpoints.import_files(open_store(load_settings()), [str(p) for p in endpoint_files], None)


def complete(protocol: str, words: str, cword: str) -> tuple[int, str, str]:
    result = metis(env={"_METIS_ENV_COMPLETE": f"{protocol}_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    return result.returncode, result.stdout.decode(), result.stderr.decode()


ENDPOINTS_AND_MODELS = ["1", "2", "DeepSeek-R1", "Llama-4-Maverick-17B-128E-Instruct", "Llama-3.3-70B-Instruct"]
MODELS_OF_2 = ["Llama-4-Maverick-17B-128E-Instruct", "Llama-3.3-70B-Instruct"]
ALL_MODELS = ["DeepSeek-R1", *MODELS_OF_2]


@pytest.mark.parametrize(
    "words, cword, expected",
    [
        ("metis-env export ", "2", ENDPOINTS_AND_MODELS),
        ("metis-env export L", "2", ["Llama-4-Maverick-17B-128E-Instruct", "Llama-3.3-70B-Instruct"]),
        ("metis-env run ", "2", ENDPOINTS_AND_MODELS),
        ("metis-env get key ", "3", ENDPOINTS_AND_MODELS),
        ("metis-env check ", "2", ENDPOINTS_AND_MODELS),
        ("metis-env forget ", "2", ["1", "2"]),
        ("metis-env forget 1 ", "3", ["1", "2"]),
        ("metis-env export 2 --model ", "4", MODELS_OF_2),
        ("metis-env export 2 --model Llama-3", "4", ["Llama-3.3-70B-Instruct"]),
        ("metis-env export --model ", "3", ALL_MODELS),  # two endpoints, no default: every model
        ("metis-env --store file run 1 -m ", "6", ["DeepSeek-R1"]),
        ("metis-env export 9 --model ", "4", ALL_MODELS),  # an unknown endpoint: every model
    ],
)
def test_bash_protocol_offers_endpoints_and_models(stored, words, cword, expected):
    assert complete("bash", words, cword) == (0, "".join(f"plain,{v}\n" for v in expected), "")


def test_the_models_of_the_default_endpoint_when_none_is_named(stored):
    metis("config", "set", "default_endpoint", "2", check=True)
    assert complete("bash", "metis-env export --model ", "3") == (0, "".join(f"plain,{v}\n" for v in MODELS_OF_2), "")


def test_zsh_protocol_carries_descriptions(stored):
    expected = [
        ("1", "DeepSeek-R1"),
        ("2", "Llama-4-Maverick-17B-128E-Instruct, Llama-3.3-70B-Instruct"),
        ("DeepSeek-R1", "model of endpoint 1"),
        ("Llama-4-Maverick-17B-128E-Instruct", "model of endpoint 2"),
        ("Llama-3.3-70B-Instruct", "model of endpoint 2"),
    ]
    assert complete("zsh", "metis-env export", "2") == (0, "".join(f"plain\n{v}\n{h}\n" for v, h in expected), "")


def test_fish_protocol(stored):
    # click changed its fish wire format between releases (8.4: three lines per item, 8.5: one
    # "type,value\thelp" line): the expected answer is worded by the installed click itself.
    from click.shell_completion import CompletionItem, FishComplete

    fish = FishComplete(None, {}, "metis-env", "_METIS_ENV_COMPLETE")
    expected = [("Llama-4-Maverick-17B-128E-Instruct", "endpoint 2"), ("Llama-3.3-70B-Instruct", "endpoint 2")]
    wire = "\n".join(fish.format_completion(CompletionItem(value, help=help)) for value, help in expected) + "\n"
    assert complete("fish", "metis-env export 2 --model Ll", "Ll") == (0, wire, "")


def test_nothing_stored_offers_nothing_and_says_nothing():
    assert complete("bash", "metis-env export ", "2") == (0, "\n", "")  # click's empty answer


def test_a_damaged_metadata_file_offers_nothing_and_says_nothing(env_setup):
    env_setup.mkdir(mode=0o700)
    (env_setup / "endpoints.yaml").write_text("{not json")
    (env_setup / "endpoints.yaml").chmod(0o600)
    assert complete("bash", "metis-env export ", "2") == (0, "\n", "")  # click's empty answer


def test_commands_complete_through_click(stored):
    code, out, err = complete("bash", "metis-env ho", "1")
    assert (code, out, err) == (0, "plain,hook\n", "")


def test_completion_reaches_click_even_with_arguments_the_fast_path_serves(stored):
    # The completion scripts call metis-env bare, but the variable alone must decide who answers.
    result = metis("export", "1", env={"_METIS_ENV_COMPLETE": "bash_complete", "COMP_WORDS": "metis-env forget ", "COMP_CWORD": "2"})
    assert (result.returncode, result.stdout.decode(), result.stderr.decode()) == (0, "plain,1\nplain,2\n", "")
