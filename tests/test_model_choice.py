"""Which model a command uses (actions.pick_model, choose_endpoint): a gateway endpoint's names in any
case, an unlisted gateway name passed on with a warning, a live model from the status cache; an
endpoint file's names as they are."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from metis_env.actions import choose_endpoint, pick_model
from metis_env.errors import NotFoundError
from metis_env.store import StoredEndpoint

MODELS = ("meta-llama/Meta-Llama-3.1-8B-Instruct", "openai/gpt-oss-120b")
GATEWAY = StoredEndpoint("sophia", "https://gw/resource_server/sophia/vllm/v1", MODELS, "", "gateway", "", "", "", "", "")
FILE = StoredEndpoint("1", "https://metis.example/v1/", ("DeepSeek-R1", "Llama-3.3-70B-Instruct"), "metis_endpoint_1.txt", "sync", "", "", "", "", "")
UNLISTED = (
    "model 'gpt-oss-20b' is not among the models the gateway listed for endpoint sophia "
    f"({', '.join(MODELS)}); passing it on as it is (the gateway may serve it under an old name): "
    "metis-env sync --gateway asks for the list again"
)
LIVE_SECOND = {MODELS[0]: "offline", MODELS[1]: "live"}


@pytest.mark.parametrize("endpoint, model, default, seen, expected", [
    (GATEWAY, None, None, None, (MODELS[0], None)),
    (GATEWAY, "OPENAI/GPT-OSS-120B", None, None, (MODELS[1], None)),
    (GATEWAY, None, "OpenAI/gpt-oss-120B", None, (MODELS[1], None)),
    (GATEWAY, "gpt-oss-20b", None, None, ("gpt-oss-20b", UNLISTED)),
    (GATEWAY, None, "gpt-oss-20b", None, (MODELS[0], None)),  # a default another endpoint serves
    (GATEWAY, None, None, LIVE_SECOND, (MODELS[1], None)),
    (GATEWAY, None, None, {MODELS[0]: "offline", MODELS[1]: "queued"}, (MODELS[0], None)),
    (GATEWAY, None, MODELS[0], LIVE_SECOND, (MODELS[0], None)),  # configured: kept, export warns
    (GATEWAY, MODELS[0], None, LIVE_SECOND, (MODELS[0], None)),
    (FILE, None, None, {"DeepSeek-R1": "offline", "Llama-3.3-70B-Instruct": "live"}, ("DeepSeek-R1", None)),
    (FILE, "Llama-3.3-70B-Instruct", None, None, ("Llama-3.3-70B-Instruct", None)),
])
def test_pick_model(endpoint, model, default, seen, expected):
    assert pick_model(endpoint, model, SimpleNamespace(default_model=default), seen) == expected


def test_an_endpoint_files_names_are_exact():
    with pytest.raises(NotFoundError) as refused:
        pick_model(FILE, "deepseek-r1", SimpleNamespace(default_model=None))
    assert str(refused.value) == (
        "endpoint 1 does not serve model 'deepseek-r1' (did you mean 'DeepSeek-R1'?); it serves: DeepSeek-R1, Llama-3.3-70B-Instruct")


def test_a_gateway_model_named_as_the_endpoint_in_any_case():
    endpoints = {"1": FILE, "sophia": GATEWAY}
    settings = SimpleNamespace(default_endpoint=None)
    assert choose_endpoint(endpoints, "OPENAI/gpt-oss-120b", settings) == (GATEWAY, MODELS[1])
    assert choose_endpoint(endpoints, "openai/gpt-oss-120b", settings) == (GATEWAY, MODELS[1])
    with pytest.raises(NotFoundError):
        choose_endpoint(endpoints, "deepseek-r1", settings)
