# shellcheck shell=bash disable=SC2034,SC2154  # it sets and reads its callers' variables
# What the bench scripts share; they source it. Not a script of its own.

# Usage: bench_python
#
# Sets python to the interpreter measured, PYTHON (default: python3 on PATH) resolved through a pyenv
# shim (a bash script: ~40 ms that is not ours to count), and bin to its scripts directory.
bench_python() {
  python="${PYTHON:-python3}"
  if command -v pyenv >/dev/null 2>&1 && [[ "$(command -v "$python")" == */shims/* ]]; then
    python="$(pyenv which "$python")"
  fi
  python="$(command -v "$python")"
  bin="$(dirname "$python")"
}

# Usage: bench_start_standin metis-env CONFIG_DIR | bench_start_standin alcf-tokens
#
# Starts the loopback Globus/gateway stand-in in a process of its own ($python, the checkout $repo,
# a fifo in $work), logged in to once: by `metis-env login --no-browser` into CONFIG_DIR (file store,
# the code approved at the stand-in) or by the real alcf-tokens CLI. Sets standin_pid (for the
# caller's cleanup), auth_url and gateway_url; fails when the login did.
bench_start_standin() {
  local code
  mkfifo "$work/ready"
  PYTHONPATH="$repo" "$python" - "$work/ready" "$@" <<'PY' &
import os, sys, time
from metis_env.testing.globus_standin import GlobusStandIn
with GlobusStandIn() as globus:
    env = {**os.environ, **globus.env()}
    try:
        if sys.argv[2] == "alcf-tokens":
            from tests._globus import alcf_tokens_login
            alcf_tokens_login(globus, env)
            code = 0
        else:
            from tests._gateway import login_headless
            code, _out, _err, _url = login_headless(
                {**env, "METIS_ENV_CONFIG_DIR": sys.argv[3], "METIS_ENV_STORE": "file"}, globus)
    except Exception as exc:  # said, and the fifo still answered: the caller must not wait forever
        print(f"bench: {exc!r}", file=sys.stderr)
        code = 1
    with open(sys.argv[1], "w") as ready:
        ready.write(f"{code} {globus.url} {globus.gateway_url}\n")
    while True:
        time.sleep(3600)
PY
  standin_pid=$!
  read -r code auth_url gateway_url <"$work/ready"
  [[ "$code" == 0 ]] || { echo "bench: the gateway login failed" >&2; return 1; }
}
