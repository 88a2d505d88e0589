#!/usr/bin/env bash
# Usage: bench/gateway.sh [RUNS]
#
# Prints the median start-up time of `metis-env export metis` (a gateway endpoint, fresh cached Globus
# token, file store) next to `python -c pass` and `alcf-tokens get-token inference` on the same tokens
# (alcf-tokens logs in against the loopback Globus/gateway stand-in, then metis-env adopts its login
# with --from-alcf-tokens), the two ratios against issue 9's goals, and the time of an export that
# refreshes its token through globus-sdk. Not a test: it prints figures. Nothing leaves 127.0.0.1.
#
# PYTHON (default: python3 on PATH) is the interpreter measured; its scripts directory must hold the
# pip-installed `metis-env` and `alcf-tokens` launchers (pip install -e '.[test]').
set -euo pipefail

runs="${1:-30}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_python
[[ -x "$bin/alcf-tokens" ]] || { echo "bench: $bin/alcf-tokens is missing (pip install alcf-tokens)" >&2; exit 1; }
unset PYTHONDONTWRITEBYTECODE

work="$(mktemp -d)"
standin_pid=""
cleanup() {
  [[ -n "$standin_pid" ]] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export HOME="$work/home" METIS_ENV_CONFIG_DIR="$work/config" METIS_ENV_STORE=file
mkdir -p "$HOME"
unset GLOBUS_SDK_ENVIRONMENT

# The stand-in, in a process of its own, logged in to with the real alcf-tokens CLI.
bench_start_standin alcf-tokens
export GLOBUS_SDK_SERVICE_URL_AUTH="$auth_url" METIS_ENV_GATEWAY_URL="$gateway_url"
cd "$work"

"$bin/metis-env" login --from-alcf-tokens 2>/dev/null
same="$("$bin/metis-env" get key metis)"
[[ "$same" == "$("$bin/alcf-tokens" get-token inference 2>/dev/null)" ]] || { echo "bench: the two tools hold different tokens" >&2; exit 1; }
echo "metis-env and alcf-tokens hold the same access token"

heavy='^(click|yaml|keyring|paramiko|globus_sdk|requests|cryptography)(\.|$)'
imported="$("$python" -X importtime -m metis_env export metis 2>&1 >/dev/null |
  awk -F'|' '/^import time:/ {gsub(/^ +| +$/, "", $3); print $3}' | grep -E "$heavy" || true)"
[[ -z "$imported" ]] || { echo "bench: export metis imported: $(echo "$imported" | tr '\n' ' ')" >&2; exit 1; }
echo "export metis (fresh token) imports none of click, yaml, keyring, paramiko, globus_sdk, requests, cryptography"

json="$work/hyperfine.json"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$json" \
  -n pass "$python -c pass" \
  -n export "$bin/metis-env export metis" \
  -n alcf "$bin/alcf-tokens get-token inference" >/dev/null 2>&1
refresh_json="$work/refresh.json"
hyperfine -N --warmup 1 --runs 10 --export-json "$refresh_json" \
  -n refresh "env METIS_ENV_TOKEN_REFRESH_MARGIN=999999 $bin/metis-env export metis" >/dev/null 2>&1

"$python" - "$json" "$refresh_json" <<'EOF'
import json, statistics, sys
results = {}
for path in sys.argv[1:]:
    results.update({r["command"]: statistics.median(r["times"]) * 1000 for r in json.load(open(path))["results"]})
labels = {"pass": "python -c pass", "export": "metis-env export metis (fresh token)",
          "alcf": "alcf-tokens get-token inference", "refresh": "metis-env export metis (refresh via globus-sdk)"}
print("\nmedians:")
for name, label in labels.items():
    print(f"  {label:50} {results[name]:8.1f} ms")
vs_pass = results["export"] / results["pass"]
vs_alcf = results["alcf"] / results["export"]
print("\nratios against issue 9's goals:")
print(f"  export / python -c pass        = {vs_pass:.2f}x (goal <= 2.2x) " + ("ok" if vs_pass <= 2.2 else "MISSED"))
print(f"  alcf-tokens get-token / export = {vs_alcf:.1f}x (goal >= 10x) " + ("ok" if vs_alcf >= 10 else "MISSED"))
EOF
