#!/usr/bin/env bash
# Usage: bench/proxy.sh [REQUESTS]
#
# Prints what `metis-env run --proxy` costs next to plain `run`, against the loopback OpenAI stub
# (metis_env/testing/openai_server.py) with an endpoint-file endpoint in a throwaway config dir (file
# store): the start-up of `run -- true` both ways, and the median latency of one chat completion
# (plain and streamed) sent by the real openai client, direct and through the proxy. Not a test: it
# prints figures. PYTHON (default: python3) must have metis-env and openai installed.
set -euo pipefail

requests="${1:-200}"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" - "$requests" "$work" <<'PY'
import os, statistics, subprocess, sys, time
from metis_env.testing.openai_server import OpenAIStubServer

requests, work = int(sys.argv[1]), sys.argv[2]
env = {**os.environ, "METIS_ENV_CONFIG_DIR": os.path.join(work, "config"), "METIS_ENV_STORE": "file"}
metis = [sys.executable, "-m", "metis_env"]
child = r'''
import json, statistics, sys, time, openai
c = openai.OpenAI(max_retries=0)
msgs = [{"role": "user", "content": "ping"}]
def timed(stream):
    t = time.perf_counter()
    if stream:
        for _ in c.chat.completions.create(model="m", messages=msgs, stream=True):
            pass
    else:
        c.chat.completions.create(model="m", messages=msgs)
    return (time.perf_counter() - t) * 1000
for s in (False, True):
    timed(s)  # warm the connection
print(json.dumps([statistics.median(timed(s) for _ in range(int(sys.argv[1]))) for s in (False, True)]))
'''
with OpenAIStubServer("sk-bench-0123456789abcdef", ["m"]) as url:
    path = os.path.join(work, "metis_endpoint_1.txt")
    open(path, "w").write(f"BASE_URL={url}/\nSAMBANOVA_API_KEY=sk-bench-0123456789abcdef\nMODELS=m\n")
    subprocess.run([*metis, "import", path], env=env, check=True, capture_output=True)

    def startup(*args):
        times = []
        for _ in range(10):
            t = time.perf_counter()
            subprocess.run([*metis, "run", *args, "1", "--", "true"], env=env, check=True)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    plain_start, proxy_start = startup(), startup("--proxy")
    import json
    direct = json.loads(subprocess.run([*metis, "run", "1", "--", sys.executable, "-c", child, str(requests)],
                                       env=env, check=True, capture_output=True, text=True).stdout)
    proxied = json.loads(subprocess.run([*metis, "run", "--proxy", "1", "--", sys.executable, "-c", child, str(requests)],
                                        env=env, check=True, capture_output=True, text=True).stdout)
print(f"run -- true:          {plain_start:6.1f} ms   run --proxy -- true: {proxy_start:6.1f} ms   (median of 10)")
print(f"chat, plain:   direct {direct[0]:6.2f} ms   through the proxy {proxied[0]:6.2f} ms   (median of {requests})")
print(f"chat, stream:  direct {direct[1]:6.2f} ms   through the proxy {proxied[1]:6.2f} ms")
PY
