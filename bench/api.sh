#!/usr/bin/env bash
# Usage: bench/api.sh [RUNS]
#
# Prints the median time of `python -c "import metis_env; metis_env.environ(1)"` (file store) in a
# fresh interpreter, next to `python -c pass` and python-dotenv's `load_dotenv` on the equivalent .env
# file (what `metis-env export 1 --shell dotenv` writes), and the ratio against issue 10's goal
# (within 1.5x of python-dotenv). Not a test: it prints figures. Uses hyperfine when present, else a
# loop in Python.
#
# PYTHON (default python3) must have metis_env and python-dotenv importable. Compare in a clean venv
# (python3 -m venv V && V/bin/pip install . python-dotenv): an editable install's .pth finder runs on
# every start-up, for all three commands alike.
set -euo pipefail

runs="${1:-30}"
python="$(command -v "${PYTHON:-python3}")"
[[ "$python" == /* ]] || python="$PWD/$python"  # the script changes directory below
unset PYTHONDONTWRITEBYTECODE  # users' installs have .pyc files; measuring compilation is not the point

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export METIS_ENV_CONFIG_DIR="$work/config" METIS_ENV_STORE=file
unset METIS_ENV_DEFAULT_ENDPOINT METIS_ENV_DEFAULT_MODEL

cat >"$work/metis_endpoint_1.txt" <<'EOF'
BASE_URL=https://metis.alcf.anl.gov/v1/
SAMBANOVA_API_KEY=sk-bench-canary-0123456789abcdef
MODELS=DeepSeek-R1,Llama-3.3-70B-Instruct
EOF
cd "$work"  # so that the installed package is measured, not a checkout in the cwd
"$python" -m metis_env import "$work/metis_endpoint_1.txt" 2>/dev/null
"$python" -m metis_env export 1 --shell dotenv >"$work/f"

declare -a names=(pass dotenv api)
declare -A cmd=(
  [pass]="pass"
  [dotenv]="import dotenv; dotenv.load_dotenv('f')"
  [api]="import metis_env; metis_env.environ(1)"
)
# The same variables both ways (checked once, before timing).
"$python" - <<'EOF'
import os, dotenv, metis_env
env = metis_env.environ(1)
dotenv.load_dotenv("f")
assert env == {name: os.environ[name] for name in env}, "bench: dotenv and metis_env disagree"
EOF

json="$work/times.json"
if command -v hyperfine >/dev/null 2>&1; then
  args=()
  for name in "${names[@]}"; do args+=(-n "$name" "$python -c \"${cmd[$name]}\""); done
  hyperfine --warmup 5 --runs "$runs" --export-json "$json" "${args[@]}" >/dev/null 2>&1
  tool="hyperfine"
else
  "$python" - "$json" "$runs" "$python" "${cmd[pass]}" "${cmd[dotenv]}" "${cmd[api]}" <<'EOF'
import json, subprocess, sys, time
out, runs, python, *codes = sys.argv[1:]
results = []
for name, code in zip(("pass", "dotenv", "api"), codes):
    times = []
    for i in range(int(runs) + 5):
        start = time.perf_counter()
        subprocess.run([python, "-c", code], check=True)
        if i >= 5:
            times.append(time.perf_counter() - start)
    results.append({"command": name, "times": times})
json.dump({"results": results}, open(out, "w"))
EOF
  tool="a Python loop (no hyperfine)"
fi

"$python" - "$json" "$tool" "$python" <<'EOF'
import json, statistics, sys
path, tool, python = sys.argv[1:]
results = {r["command"]: statistics.median(r["times"]) * 1000 for r in json.load(open(path))["results"]}
labels = {
    "pass": "python -c pass",
    "dotenv": "python -c \"import dotenv; dotenv.load_dotenv('f')\"",
    "api": "python -c \"import metis_env; metis_env.environ(1)\"",
}
print(f"medians of the runs, by {tool} ({python}):")
for name, label in labels.items():
    print(f"  {label:58} {results[name]:7.1f} ms")
ratio = results["api"] / results["dotenv"]
over = (results["api"] - results["pass"]) / max(results["dotenv"] - results["pass"], 1e-9)
print(f"metis_env.environ(1) / load_dotenv = {ratio:.2f}x (goal <= 1.5x) " + ("ok" if ratio <= 1.5 else "MISSED"))
print(f"above python -c pass: metis_env {results['api'] - results['pass']:.1f} ms, "
      f"dotenv {results['dotenv'] - results['pass']:.1f} ms ({over:.2f}x)")
EOF
