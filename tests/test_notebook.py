"""%load_ext metis_env and %metis in a real Jupyter kernel (nbclient + ipykernel), and the saved
notebook scanned for the key."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from metis_env.commands import endpoints
from metis_env.magic import parse_line
from metis_env.errors import UsageError
from metis_env.settings import load_settings
from metis_env.store import open_store
from metis_env.testing.openai_server import OpenAIStubServer
from tests.conftest import REPO
from tests.test_api import SEED_EXAMPLE

KEY = "sk-notebook-key-0123456789abcdef"


def run_notebook(tmp_path, cells: list[str], env: dict[str, str]) -> tuple[nbformat.NotebookNode, str]:
    """Execute the cells in a fresh python3 kernel with ``env``; save the notebook; return it and its text."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    kernel_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    client = NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}})
    client.km = client.create_kernel_manager()
    client.start_new_kernel(env=kernel_env)
    client.start_new_kernel_client()
    try:
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
    finally:
        client._cleanup_kernel()
    saved = tmp_path / "saved.ipynb"
    nbformat.write(notebook, saved)
    return notebook, saved.read_text()


def outputs(cell) -> list[tuple]:
    shown = []
    for out in cell.outputs:
        if out.output_type == "stream":
            shown.append((out.name, out.text))
        elif out.output_type == "error":
            shown.append(("error", out.ename, out.traceback))
        else:
            shown.append((out.output_type, out.data.get("text/plain")))
    return shown


def store_endpoint(tmp_path, base_url: str) -> None:
    path = tmp_path / "metis_endpoint_1.txt"
    path.write_text(f"BASE_URL={base_url}/\nSAMBANOVA_API_KEY={KEY}\nMODELS=DeepSeek-R1\n")
    endpoints.import_files(open_store(load_settings()), [str(path)], None)


NAMES = (
    "OPENAI_BASE_URL, OPENAI_API_BASE, OPENAI_API_KEY, MODEL_NAME, SAMBANOVA_API_KEY, SAMBANOVA_API_BASE, "
    "SAMBA_NOVA_BASE_URL, OPENAI_AGENTS_DISABLE_TRACING, LITELLM_LOCAL_MODEL_COST_MAP, METIS_ENV_ENDPOINT"
)
SET_LINE = f"metis-env: endpoint 1, model DeepSeek-R1: set {NAMES}\n"


def test_metis_magic_and_the_seed_example_in_a_real_kernel(file_store, tmp_path):
    with OpenAIStubServer(KEY, ["DeepSeek-R1"], reply="Hello from the notebook's endpoint.") as base_url:
        store_endpoint(tmp_path, base_url)
        seed = SEED_EXAMPLE.replace("query = sys.argv[1]", 'query = "What is an extinction vortex?"')
        notebook, saved = run_notebook(
            tmp_path,
            [
                "%load_ext metis_env",
                "%metis 1",
                seed,
                "import metis_env\nmetis_env.environ(1)",  # a cell's value is displayed and saved
                "client = metis_env.openai_client(1)\n"
                "print(client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'hi'}]).choices[0].message.content)".replace(
                    "MODEL", "metis_env.environ(1)['MODEL_NAME']"
                ),
                "%metis --unset",
                "import os\nprint(sorted(n for n in os.environ if n.startswith(('OPENAI_', 'SAMBA', 'LITELLM_', 'MODEL_NAME', 'METIS_ENV_ENDPOINT'))))",
            ],
            {"METIS_ENV_STORE": "file"},
        )
    assert [outputs(cell) for cell in notebook.cells] == [
        [],
        [("stdout", SET_LINE)],
        [("stdout", "Hello from the notebook's endpoint.\n")],
        [
            (
                "execute_result",
                f"Environment({{'OPENAI_BASE_URL': '{base_url}/', 'OPENAI_API_BASE': '{base_url}/', 'OPENAI_API_KEY': 'sk-…cdef', "
                f"'MODEL_NAME': 'DeepSeek-R1', 'SAMBANOVA_API_KEY': 'sk-…cdef', 'SAMBANOVA_API_BASE': '{base_url}/', "
                f"'SAMBA_NOVA_BASE_URL': '{base_url}/', 'OPENAI_AGENTS_DISABLE_TRACING': '1', "
                f"'LITELLM_LOCAL_MODEL_COST_MAP': 'True', 'METIS_ENV_ENDPOINT': '1'}})",
            )
        ],
        [("stdout", "Hello from the notebook's endpoint.\n")],
        [("stdout", f"metis-env: unset {NAMES}\n")],
        [("stdout", "[]\n")],
    ]
    assert (KEY in saved, KEY[-12:] in saved, "cdef" in saved) == (False, False, True)


def test_a_kernel_without_the_stores_backend_shows_one_line(tmp_path):
    store_endpoint(tmp_path, "https://metis.alcf.anl.gov/v1")  # into the keyring (in-memory, this process)
    notebook, saved = run_notebook(
        tmp_path,
        ["%load_ext metis_env", "%metis 1", "print('after')"],
        {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    assert [outputs(cell) for cell in notebook.cells] == [
        [],
        [
            (
                "error",
                "StoreUnavailableError",
                [
                    "metis-env: error: the key of endpoint 1 is in the OS keyring, and no OS keyring is available here "
                    "(usual on HPC nodes, containers and CI): unlock the keyring (then metis-env store move --to file "
                    "makes the keys usable without it), or fetch the key again into the file store "
                    "(metis-env --store file sync, import or login)"
                ],
            )
        ],
        [("stdout", "after\n")],  # allow_errors: a real "Run all" would stop at the error
    ]
    assert KEY not in saved


def test_a_bad_magic_line_is_one_line_too(file_store, tmp_path):
    notebook, _saved = run_notebook(tmp_path, ["%load_ext metis_env", "%metis 1 2", "%metis 1"], {"METIS_ENV_STORE": "file"})
    assert [outputs(cell) for cell in notebook.cells] == [
        [],
        [("error", "UsageError", ["metis-env: error: %metis: unexpected '2'; usage: %metis [ENDPOINT] [--model NAME] | %metis --unset"])],
        [("error", "NotFoundError", ["metis-env: error: no endpoints are stored yet; run metis-env sync (endpoint files over SSH) or metis-env login (the ALCF gateway), or metis-env import FILE"])],
    ]


@pytest.mark.parametrize(
    "line, parsed",
    [
        ("", (None, None, False)),
        ("1", ("1", None, False)),
        ("sophia --model X", ("sophia", "X", False)),
        ("sophia -m X", ("sophia", "X", False)),
        ("--model=X 2", ("2", "X", False)),
        ("'metis_endpoint_2'", ("metis_endpoint_2", None, False)),
        ("--unset", (None, None, True)),
    ],
)
def test_magic_lines(line, parsed):
    assert parse_line(line) == parsed


@pytest.mark.parametrize(
    "line, message",
    [
        ("1 2", "%metis: unexpected '2'; usage: %metis [ENDPOINT] [--model NAME] | %metis --unset"),
        ("--model", "%metis: --model needs a model name; usage: %metis [ENDPOINT] [--model NAME] | %metis --unset"),
        ("--shell bash", "%metis: unexpected '--shell'; usage: %metis [ENDPOINT] [--model NAME] | %metis --unset"),
        ("'1", "%metis: No closing quotation; usage: %metis [ENDPOINT] [--model NAME] | %metis --unset"),
    ],
)
def test_bad_magic_lines(line, message):
    with pytest.raises(UsageError) as caught:
        parse_line(line)
    assert str(caught.value) == message
