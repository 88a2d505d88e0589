"""The node broker (`metis-env proxy`, `run --proxy` joining it, `openai_client(proxy=True)`), with the
real CLI, the real openai client, and the loopback stubs and gateway stand-in upstream. Every wait is
for a state (an answer, a process gone, a file there), never for time."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from metis_env.broker.pacing import Pacer, RateControl
from tests._gateway import login_headless, gateway_env
from tests._globus import globus, globus_env  # noqa: F401  (fixtures)
from tests._http import Canned, CannedServer
from tests.conftest import REPO, metis
from tests.test_proxy import KEY_1, MODEL_1, REPLY, endpoint_file, stubs, wait_for  # noqa: F401  (a fixture)

ENV = {"PYTHONPATH": str(REPO)}


def runtime_dir() -> Path:
    return Path(os.environ["XDG_RUNTIME_DIR"]) / "metis-env"


def broker_state() -> dict:
    return json.loads((runtime_dir() / "broker.json").read_text())


def brokers_running() -> list[int]:
    """The pids of broker processes (named metis-env-proxy, forked or started) of this test's runtime dir."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if name == "metis-env-proxy" and f"XDG_RUNTIME_DIR={os.environ['XDG_RUNTIME_DIR']}".encode() in environ and state != "Z":
            found.append(int(pid))
    return found


def test_many_ranks_starting_at_once_make_exactly_one_broker(stubs):
    child = "import os; print(os.environ['OPENAI_BASE_URL'], os.environ['OPENAI_API_KEY'])"
    ranks = [subprocess.Popen([sys.executable, "-m", "metis_env", "run", "--proxy", "1", "--", sys.executable, "-c", child],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **ENV}) for _ in range(16)]
    seen = {(rank.communicate(timeout=120)[0].decode(), rank.returncode) for rank in ranks}
    state = broker_state()
    assert (seen, brokers_running()) == (
        {(f"http://127.0.0.1:{state['port']}/endpoint/1/v1/ {state['local_key']}\n", 0)}, [state["pid"]]
    )


SHELL_CLIENT = r"""
eval "$(metis-env proxy start 1)"
python -c 'import openai, os; print(openai.OpenAI(max_retries=0).chat.completions.create(model=os.environ["MODEL_NAME"], messages=[]).choices[0].message.content)'
metis-env proxy start 1 --shell json | python -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))'
metis-env proxy status --json
"""


def test_proxy_start_prints_the_code_joins_and_status_counts(stubs, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "metis-env").write_text(f"#!/bin/sh\nexec {sys.executable} -m metis_env \"$@\"\n")
    (bin_dir / "metis-env").chmod(0o755)
    (bin_dir / "python").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, **ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}", "no_proxy": "admin,.alcf.anl.gov"}
    result = subprocess.run(["bash", "-c", SHELL_CLIENT], capture_output=True, env=env, timeout=120)
    reply, joined, status = result.stdout.decode().split("\n", 2)
    assert result.stderr == b"", result.stderr
    joined_env, seen = json.loads(joined), json.loads(status)
    state = broker_state()
    url = f"http://127.0.0.1:{state['port']}/endpoint/1/v1/"
    assert (result.returncode, reply, result.stderr) == (0, REPLY, b"")
    assert {k: joined_env[k] for k in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY", "MODEL_NAME", "NO_PROXY", "no_proxy")} == {
        "OPENAI_BASE_URL": url, "OPENAI_API_BASE": url, "OPENAI_API_KEY": state["local_key"], "MODEL_NAME": MODEL_1,
        "NO_PROXY": "admin,.alcf.anl.gov,127.0.0.1,localhost,::1", "no_proxy": "admin,.alcf.anl.gov,127.0.0.1,localhost,::1",
    }
    assert {k: seen[k] for k in ("running", "pid", "requests", "refreshes", "rate_limited_absorbed", "queue", "rate")} == {
        "running": True, "pid": state["pid"], "requests": 1, "refreshes": 0, "rate_limited_absorbed": 0, "queue": 0, "rate": None,
    }


def test_proxy_stop_and_status_when_none_runs(stubs):
    assert metis("proxy", "start", "1").returncode == 0
    pid = broker_state()["pid"]
    stop = metis("proxy", "stop")
    again = metis("proxy", "stop")
    status_json, status = metis("proxy", "status", "--json"), metis("proxy", "status")
    assert (stop.returncode, stop.stderr.decode(), brokers_running()) == (0, f"metis-env: broker (pid {pid}) stopped\n", [])
    assert (again.returncode, again.stderr) == (0, b"metis-env: no broker runs on this host\n")
    assert (status_json.returncode, status_json.stdout) == (0, b'{"running": false}\n')
    assert (status.returncode, status.stdout, status.stderr) == (
        26, b"", b"metis-env: error: no broker runs on this host; start one: metis-env proxy start\n"
    )


def test_the_broker_exits_when_idle_and_leaves_no_state(stubs):
    # The shell that started it exits at once: no client is left, so the broker leaves after 0.5 s.
    result = subprocess.run(["bash", "-c", f"{sys.executable} -m metis_env proxy start 1 --idle-exit 0.5 >/dev/null"],
                            env={**os.environ, **ENV}, timeout=60)
    pid = broker_state()["pid"]
    wait_for(lambda: not brokers_running(), timeout=60)
    assert (result.returncode, (runtime_dir() / "broker.json").exists(), pid > 0) == (0, False, True)


def test_a_foreground_broker_serves_until_sigterm(stubs):
    process = subprocess.Popen([sys.executable, "-m", "metis_env", "proxy", "start", "1", "--foreground", "--shell", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **ENV})
    assert process.stdout is not None
    code = json.loads(b"".join(iter(process.stdout.readline, b"}\n")) + b"}")  # printed once it listens
    child = "import openai; print(openai.OpenAI(max_retries=0).models.list().data[0].id)"
    listed = subprocess.run([sys.executable, "-c", child], capture_output=True, env={**os.environ, **code}, timeout=60)
    joined = metis("proxy", "start", "1", "--foreground", "--shell", "json")  # one runs: it joins and returns
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert (listed.stdout.decode(), json.loads(joined.stdout)["OPENAI_API_KEY"]) == (f"{MODEL_1}\n", code["OPENAI_API_KEY"])
    assert (process.returncode, out, err, (runtime_dir() / "broker.json").exists()) == (0, b"", b"", False)


def test_the_python_api_goes_through_the_broker(stubs):
    child = ("import metis_env, os\nc = metis_env.openai_client(1, proxy=True, max_retries=0)\n"
             "print(c.chat.completions.create(model='DeepSeek-R1', messages=[]).choices[0].message.content, c.base_url)")
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, env={**os.environ, **ENV,
                            "http_proxy": "http://127.0.0.1:9", "no_proxy": "admin"}, timeout=60)
    state = broker_state()
    assert (result.returncode, result.stdout.decode(), result.stderr) == (
        0, f"{REPLY} http://127.0.0.1:{state['port']}/endpoint/1/v1/\n", b""
    )


# --- rate limits -------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_the_rate_starts_at_the_cap_is_cut_once_per_burst_then_regained_toward_where_the_429s_began():
    clock = FakeClock()
    control = RateControl(10.0, clock)

    def answers(seconds: float) -> float:  # ten successes a second
        for _ in range(round(seconds * 10)):
            clock.now += 0.1
            control.succeeded()
        return round(control.rate, 1)

    seen = [
        ("at first", control.rate),
        ("a 429", (control.throttled(clock.now, 10), control.rate)),
        ("a 429 to a request sent before the cut", (control.throttled(clock.now - 0.1, 10), control.rate)),
        ("5 s of answers: 80% of where the 429s began", answers(5)),
        ("3 s more: 1% of the cap a second", answers(3)),
        ("4 s more, 12 s since the cut: climbing faster", answers(4)),
        ("3 s more", answers(3)),
    ]
    assert seen == [
        ("at first", 10.0),
        ("a 429", (True, 7.0)),
        ("a 429 to a request sent before the cut", (False, 7.0)),
        ("5 s of answers: 80% of where the 429s began", 8.0),
        ("3 s more: 1% of the cap a second", 8.3),
        ("4 s more, 12 s since the cut: climbing faster", 8.9),
        ("3 s more", 10.0),
    ]


@pytest.mark.parametrize("succeeded, left", [
    (8, 0.7),  # 8 of the last window's 9 answers succeeded: 95% of that share is more than 70%
    (6, 0.95 * 6 / 9),  # 6 of 9: that share (less 5%)
    (2, 0.7 ** 2),  # 2 of 9: never more than two cuts at once
])
def test_a_429_cuts_to_the_share_of_answers_that_succeeded_when_that_is_lower(succeeded, left):
    """Four brokers that start together at the cap: each sees about a quarter of its answers succeed."""
    clock = FakeClock()
    control = RateControl(10.0, clock)
    for ok in (True, True, False):  # the first 429: too little history for a share, a cut to 70%
        clock.now += 0.1
        (control.succeeded() if ok else control.throttled(clock.now - 0.05, 3))
    first, cut_at = control.rate, clock.now
    for number in range(8):  # the next second: ``succeeded`` of these and the 429 below succeeded
        clock.now += 0.125
        (control.succeeded() if number < succeeded else control.throttled(cut_at - 0.01, 8))  # sent before the cut
    clock.now += 0.1
    before = control.rate  # a little over 7: regaining since the cut
    assert (first, control.throttled(clock.now - 0.05, 7), control.rate, control.cuts) == (7.0, True, left * before, 2)


def test_requests_leave_spaced_at_the_rate_and_never_more_than_the_cap_in_a_window():
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    turns = []
    for _ in range(12):
        turns.append(pacer.wait_turn())
        pacer.answered(turns[-1])  # at once
    assert clock.slept == [0.1] * 9 + [0.12, 0.1]  # the eleventh a window after the first
    clock.slept.clear()
    pacer.throttled(turns[-1])
    pacer.wait_turn()
    # spaced at the new rate from the moment the last one was due (101.1; the window held it to 101.12)
    assert (clock.slept, pacer.rate) == ([round(101.1 + 1 / 7 - 101.12, 3)], 7.0)


@pytest.mark.parametrize("first_answered_at, slept", [
    (100.1, [0.1] * 9 + [0.22]),  # answered 0.1 s after it was sent: counted from then
    (101.5, [0.1] * 9 + [1.12]),  # answered 1.5 s after it was sent: counted a second after it was sent at most
    (None, [0.1] * 9 + [1.02, 0.1]),  # still on its way: it may be counted up to a second after it was sent
])
def test_a_request_counts_from_its_answer_at_most_a_second_after_it_was_sent(first_answered_at, slept):
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    turns = [pacer.wait_turn() for _ in range(10)]  # from 100.0 to 100.9
    for turn in turns[1:]:
        turn.counted = turn.sent
    if first_answered_at is not None:
        clock.now, before = first_answered_at, clock.now
        pacer.answered(turns[0])
        clock.now = before
    pacer.wait_turn()
    assert clock.slept == slept


def test_a_held_request_goes_before_the_requests_waiting_their_first_turn():
    clock, lock = FakeClock(), threading.Lock()
    asleep, wake = queue.Queue(), threading.Event()
    order: list[str] = []

    def sleep(seconds: float) -> None:
        asleep.put(seconds)
        wake.wait()
        with lock:
            clock.now += seconds

    pacer = Pacer(1.0, clock=clock, sleep=sleep)
    pacer.wait_turn()  # the first goes at once; the next must wait a second

    def request(name: str, first: bool = False) -> threading.Thread:
        thread = threading.Thread(target=lambda: (pacer.wait_turn(first=first), order.append(name)))
        thread.start()
        return thread

    threads = [request("new 1")]
    asleep.get(timeout=30)  # first in line, sleeping until its moment
    threads.append(request("new 2"))
    while pacer.waiting < 2:
        time.sleep(0.01)  # polling a state: "new 2" has joined the line
    threads.append(request("held", first=True))
    asleep.get(timeout=30)  # the held one is first in line now
    wake.set()
    for thread in threads:
        thread.join(timeout=30)
    assert order == ["held", "new 1", "new 2"]


def file_upstream(tmp_path, route) -> CannedServer:
    server = CannedServer(route)
    server.__enter__()
    folder = tmp_path / "files"
    folder.mkdir(exist_ok=True)
    assert metis("import", str(endpoint_file(folder, 1, f"http://127.0.0.1:{server.port}/v1", KEY_1, ["m"]))).returncode == 0
    return server


CHAT = ("import openai, json\ntry:\n    r = openai.OpenAI(max_retries=0).chat.completions.create(model='m', messages=[])\n    print(json.dumps([200, r.choices[0].message.content]))\n"
        "except openai.APIStatusError as e:\n    print(json.dumps([e.status_code, e.body]))")
OK = Canned(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}).encode())


@pytest.mark.parametrize("first, absorbed", [
    (Canned(429, b'{"detail": "Too many requests."}'), 1),
    (Canned(429, b'{"error": {"code": "too_many_requests", "message": "Tokens/minute limit exceeded", "info": {}}}'), 1),
    (Canned(503, b'{"error": {"code": "busy", "message": "try later"}}', (("Retry-After", "0"),)), 1),
])
def test_a_429_or_a_503_with_retry_after_is_held_and_retried(file_store, tmp_path, first, absorbed):
    answers = iter([first])
    upstream = file_upstream(tmp_path, lambda h: next(answers, OK))
    try:
        result = metis("run", "--proxy", "--", sys.executable, "-c", CHAT)
        seen = json.loads(metis("proxy", "status", "--json").stdout)
    finally:
        upstream.__exit__(None, None, None)
    assert (result.returncode, json.loads(result.stdout), upstream.paths, seen["rate_limited_absorbed"]) == (
        0, [200, "ok"], ["/v1/chat/completions"] * 2, absorbed
    )


@pytest.mark.parametrize("message", ["'gpt-oss-120b' is not currently live on Metis.", "Metis is under maintenance until 18:00."])
def test_a_503_for_a_model_not_live_or_in_maintenance_is_answered_at_once(file_store, tmp_path, message):
    body = json.dumps({"error": {"code": "internal_endpoint_error", "message": message}}).encode()
    upstream = file_upstream(tmp_path, lambda h: Canned(503, body, (("Retry-After", "30"), ("Content-Type", "application/json"))))
    try:
        result = metis("run", "--proxy", "--", sys.executable, "-c", CHAT)
    finally:
        upstream.__exit__(None, None, None)
    assert (json.loads(result.stdout), upstream.paths) == ([503, {"code": "internal_endpoint_error", "message": message}], ["/v1/chat/completions"])


def test_a_client_sees_the_429_once_the_deadline_passed(file_store, tmp_path):
    from metis_env.broker.engine import ProxyServer, Router
    from metis_env.broker.upstream import KeyCache
    from metis_env.settings import load_settings
    from metis_env.store import open_store

    upstream = file_upstream(tmp_path, lambda h: Canned(429, b'{"detail": "Too many requests."}'))
    settings = load_settings()
    store = open_store(settings)
    server = ProxyServer(Router(store, "1"), KeyCache(store, settings), "metis-env-local-test", settings, rate_limit_deadline=0.0)
    server.start()
    try:
        result = subprocess.run([sys.executable, "-c", CHAT], capture_output=True, timeout=60,
                                env={**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "metis-env-local-test"})
    finally:
        server.stop()
        upstream.__exit__(None, None, None)
    assert (json.loads(result.stdout), len(upstream.paths)) == ([429, {"detail": "Too many requests."}], 1)


# --- against the gateway stand-in's own throttle ---------------------------------------------------------

BURST = r"""
import json, os, sys, threading, openai
client = openai.OpenAI(max_retries=0)
out, lock = [], threading.Lock()
def one():
    try:
        r = client.chat.completions.create(model="gpt-oss-120b", messages=[{"role": "user", "content": "x"}])
        result = r.choices[0].message.content
    except openai.APIStatusError as e:
        result = e.status_code
    with lock:
        out.append(result)
threads = [threading.Thread(target=one) for _ in range(int(sys.argv[1]))]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(sorted(set(map(str, out)))), len(out))
"""


STATUS_FROM_A_CLIENT = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-m', 'metis_env', 'proxy', 'status', '--json']).returncode)"


def test_proxy_start_min_ttl_refreshes_now_unless_that_much_is_left_and_the_broker_keeps_it(globus, globus_env):  # noqa: F811
    from tests.test_gateway_tokens import age_the_token

    env = {**gateway_env(globus_env), **ENV}
    assert login_headless(env, globus)[0] == 0  # a 48 h token

    def start(*options: str) -> tuple[int, bytes, int, object]:
        started = metis("proxy", "start", "metis", "--shell", "json", *options, env=env)
        seen = json.loads(metis("proxy", "status", "--json", env=env).stdout)
        return started.returncode, started.stderr, globus.grants("refresh_token"), seen["min_ttl"]

    steps = [start("--min-ttl", "30h")]  # started (forked) with it: 48 h left, no refresh
    age_the_token(env, 28 * 3600)  # 20 h left
    steps.append(start("--min-ttl", "30h"))  # joined: refreshed now, as export --min-ttl 30h would
    steps.append(start("--min-ttl", "40h"))  # joined asking for more: the broker refreshes 40 h before expiry
    steps.append(start("--min-ttl", "1h"))  # less: kept at 40 h
    assert metis("proxy", "stop", env=env).returncode == 0
    ran = metis("run", "--proxy", "--min-ttl", "35h", "metis", "--", sys.executable, "-c", STATUS_FROM_A_CLIENT, env=env)
    assert steps + [(ran.returncode, json.loads(ran.stdout)["min_ttl"])] == [
        (0, b"", 0, 30 * 3600.0), (0, b"", 1, 30 * 3600.0), (0, b"", 1, 40 * 3600.0), (0, b"", 1, 40 * 3600.0), (0, 35 * 3600.0),
    ]  # the last: a broker started (not forked) by run --proxy --min-ttl 35h


def test_a_burst_over_the_gateways_limit_succeeds_through_the_broker(globus, globus_env):  # noqa: F811
    from metis_env.testing.gateway_standin import REPLY as GATEWAY_REPLY, Throttle

    globus.throttle = Throttle(per_second=3)  # a limit shared with another node's broker, seen from here
    env = gateway_env(globus_env)
    code, out, err, _url = login_headless(env, globus)
    assert (code, out) == (0, b""), err
    result = subprocess.run([sys.executable, "-m", "metis_env", "run", "--proxy", "metis", "--", sys.executable, "-c", BURST, "30"],
                            capture_output=True, env={**env, **ENV}, timeout=300)
    seen = json.loads(metis("proxy", "status", "--json", env=env).stdout)
    assert (result.returncode, result.stdout.decode(), result.stderr) == (0, f'["{GATEWAY_REPLY}"] 30\n', b"")
    assert (seen["requests"], seen["rate_limited_absorbed"] == globus.throttle.refused, seen["rate"] < 10) == (30, True, True)


def test_the_stand_in_throttles_as_first_does(globus, globus_env):  # noqa: F811
    from tests._globus import gateway_request
    from metis_env.testing.gateway_standin import Throttle

    clock = FakeClock()
    globus.throttle = Throttle(per_second=10, clock=clock)
    globus.throttle.tokens_per_minute = {"metis/gpt-oss-120b": (0, 70)}  # 10 answers of 7 tokens
    env = gateway_env(globus_env)
    code, out, err, _url = login_headless(env, globus)
    assert code == 0, err
    token = metis("get", "key", "metis", env=env).stdout.decode().strip()
    clock.now += 2  # the login's own requests are out of the window
    chat = {"model": "gpt-oss-120b", "messages": []}
    statuses = [gateway_request(globus, "POST", "metis/api/v1/chat/completions", token, chat)[::2] for _ in range(11)]
    clock.now += 1.0  # a second on: the window is free again, but the user used 10 x 7 tokens this minute
    over = gateway_request(globus, "POST", "metis/api/v1/chat/completions", token, chat)
    clock.now += 60.0
    fresh = gateway_request(globus, "POST", "metis/api/v1/chat/completions", token, chat)
    assert [s for s, _ in statuses] == [200] * 10 + [429]
    assert statuses[-1][1] == {"detail": "Too many requests."}
    assert (over[0], over[2]) == (429, {"error": {"code": "too_many_requests", "message": "Tokens/minute limit exceeded",
                                                    "info": {"global_model_usage": 70, "user_model_usage": 70}}})
    assert fresh[0] == 200


@pytest.mark.parametrize("make", [
    lambda path: path.mkdir(mode=0o755),  # open to others
    lambda path: path.symlink_to(path.parent),  # a symlink someone planted
])
def test_a_runtime_dir_made_by_someone_else_or_open_to_others_is_refused(stubs, make):
    path = runtime_dir()
    make(path)
    path.parent.chmod(0o700)
    result = metis("run", "--proxy", "1", "--", "true")
    assert (result.returncode, result.stdout, result.stderr.decode()) == (
        26, b"", f"metis-env: error: the broker's runtime dir {path} is not a directory of yours with mode 0700; remove it, or set XDG_RUNTIME_DIR\n"
    )


def test_the_broker_holds_keys_with_core_dumps_off_and_logs_no_key(stubs):
    one, _, _ = stubs
    one.rotate_key("sk-someone-else-entirely-000")  # a 401, so that the broker has something to log
    assert metis("run", "--proxy", "1", "--", sys.executable, "-c", CHAT.replace("'m'", f"'{MODEL_1}'")).returncode == 0
    limits = Path(f"/proc/{broker_state()['pid']}/limits").read_text().splitlines()
    core = [line.split()[4:6] for line in limits if line.startswith("Max core file size")]
    log = (runtime_dir() / "broker.log").read_text()
    # the soft limit 0: no core file, whatever the hard limit
    assert (core[0][0], KEY_1 in log, oct((runtime_dir() / "broker.log").stat().st_mode & 0o777)) == ("0", False, "0o600")


STARTER = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})  # as a starter under nohup or a job launcher may
sys.argv = ["metis-env", "proxy", "start", "1"]
from metis_env.main import entry
entry()
"""


def open_fds_and_state(pid: int) -> tuple[set[str], str, int]:
    """The targets of a process's open fds, its cwd and its blocked-signal mask."""
    fds = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    blocked = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigBlk:"))
    return fds, os.readlink(f"/proc/{pid}/cwd"), int(blocked.split()[1], 16)


def test_a_forked_broker_keeps_none_of_its_starters_fds_cwd_or_blocked_signals(stubs, tmp_path):
    # A caller's extra fd (bats's fd 3, a CI runner's pipe) held by the broker keeps that reader
    # waiting for EOF until the broker exits; its cwd would keep a directory busy (an unmount);
    # SIGTERM blocked by the starter would leave the broker deaf to a job's end.
    read_end, write_end = os.pipe()
    workdir = tmp_path / "project"
    workdir.mkdir()
    try:
        result = subprocess.run([sys.executable, "-c", STARTER], cwd=workdir, pass_fds=(write_end,), capture_output=True,
                                env={**os.environ, **ENV}, timeout=120)
    finally:
        os.close(write_end)
    pipe = os.readlink(f"/proc/self/fd/{read_end}")
    fds, cwd, blocked = open_fds_and_state(broker_state()["pid"])
    os.close(read_end)
    assert (result.returncode, result.stderr, pipe in fds, cwd, blocked) == (0, b"", False, "/", 0)


def test_a_dead_brokers_port_held_by_someone_else_gets_no_key_and_no_request(stubs):
    # A broker killed (SIGKILL, the OOM killer) leaves broker.json behind; another local user who then
    # listens at its port and answers status with its old pid must get neither the (old) local key
    # nor the command's requests: a new broker starts instead, at another port.
    dead = subprocess.Popen(["true"])
    dead.wait()  # gone and reaped: its pid is free
    seen: list[str] = []

    def route(handler) -> Canned:
        seen.append(f"{handler.command} {handler.path} {handler.headers.get('Authorization')}")
        return Canned(200, json.dumps({"pid": dead.pid}).encode())

    directory = runtime_dir()
    directory.mkdir(mode=0o700)
    with CannedServer(route) as squatter:
        stale = {"pid": dead.pid, "port": squatter.port, "local_key": "metis-env-local-stale", "config_dir": os.environ["METIS_ENV_CONFIG_DIR"],
                 "started": 0.0, "default_endpoint": "1"}
        (directory / "broker.json").write_text(json.dumps(stale))
        (directory / "broker.json").chmod(0o600)
        child = "import os; print(os.environ['OPENAI_BASE_URL'])"
        result = metis("run", "--proxy", "1", "--", sys.executable, "-c", child)
        status = metis("proxy", "status", "--json")
    state = broker_state()
    assert (result.returncode, result.stdout.decode(), seen, state["port"] != squatter.port, json.loads(status.stdout)["pid"]) == (
        0, f"http://127.0.0.1:{state['port']}/endpoint/1/v1/\n", [], True, state["pid"])
