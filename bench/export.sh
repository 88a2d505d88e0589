#!/usr/bin/env bash
# Usage: bench/export.sh [RUNS]
#
# Prints the median start-up time of `metis-env export` with the file store and with Secret Service,
# next to `python -c pass` (same interpreter) and `keyring get` / `secret-tool lookup` on the same
# private gnome-keyring, and the two ratios against issue 2's targets; then `export` of a gateway
# endpoint (a fresh token from one headless login at the loopback Globus/gateway stand-in, file store)
# and both sources against issue 15's target, 1.5x `python -c pass`. Not a test: it prints figures.
#
# PYTHON (default: python3 on PATH, resolved through pyenv shims) is the interpreter measured; its
# scripts directory must hold the pip-installed `metis-env` and `keyring` launchers, and the gateway's
# login step runs the checkout's tests/_gateway.py (pytest and globus-sdk). Compare in a clean venv
# (python3 -m venv V && V/bin/pip install '.[test]', not -e): site-packages .pth files (an editable
# install's finder) load on every start-up, `python -c pass` included.
set -euo pipefail

runs="${1:-30}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_python
unset PYTHONDONTWRITEBYTECODE  # users' installs have .pyc files; measuring compilation is not the point

work="$(mktemp -d)"
bus_pid="" gk_pid="" standin_pid=""
cleanup() {
  [[ -n "$standin_pid" ]] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null
  [[ -n "$gk_pid" ]] && kill "$gk_pid" 2>/dev/null && wait "$gk_pid" 2>/dev/null
  [[ -n "$bus_pid" ]] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A private session bus and gnome-keyring, never the user's (TESTING.md).
mkdir -p "$work/run" "$work/data" && chmod 700 "$work/run"
export XDG_RUNTIME_DIR="$work/run" XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/xdg-config"
unset PYTHON_KEYRING_BACKEND METIS_ENV_STORE DISPLAY WAYLAND_DISPLAY
exec {bus_out}< <(exec dbus-daemon --session --nofork --print-address=1 2>/dev/null)
bus_pid=$!
read -r -u "$bus_out" DBUS_SESSION_BUS_ADDRESS
export DBUS_SESSION_BUS_ADDRESS
printf %s bench-password | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 &
gk_pid=$!
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q "boolean true"; do
  sleep 0.05
done

cat >"$work/metis_endpoint_1.txt" <<'EOF'
BASE_URL=https://metis.alcf.anl.gov/v1/
SAMBANOVA_API_KEY=sk-bench-canary-0123456789abcdef
MODELS=DeepSeek-R1,Llama-3.3-70B-Instruct
EOF
cd "$work"  # so that `python -m metis_env` finds the installed package, not a checkout in the cwd
METIS_ENV_CONFIG_DIR="$work/ss" "$bin/metis-env" import "$work/metis_endpoint_1.txt" 2>/dev/null
METIS_ENV_CONFIG_DIR="$work/file" METIS_ENV_STORE=file "$bin/metis-env" import "$work/metis_endpoint_1.txt" 2>/dev/null
ref="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoints"]["1"]["secret"])' "$work/ss/endpoints.yaml")"
grep -q '"backend": "keyring.backends.SecretService.Keyring"' "$work/ss/endpoints.yaml" || {
  echo "bench: keyring did not pick Secret Service" >&2; exit 1; }

# A gateway endpoint: the stand-in in a process of its own, logged in to once (login --no-browser, the
# code approved at the stand-in); its tokens are fresh for hours, so export reads them with no network.
bench_start_standin metis-env "$work/gw"
gw_env="METIS_ENV_CONFIG_DIR=$work/gw METIS_ENV_STORE=file METIS_ENV_GATEWAY_URL=$gateway_url GLOBUS_SDK_SERVICE_URL_AUTH=$auth_url"
gw_token="$(env $gw_env "$bin/metis-env" get key metis)"

# The commands, all printing the canary key or the gateway token (checked once before timing).
declare -a names=(pass file_script file_module ss_script ss_module keyring_get secret_tool gw_script gw_module)
declare -A cmd=(
  [pass]="$python -c pass"
  [file_script]="env METIS_ENV_CONFIG_DIR=$work/file METIS_ENV_STORE=file $bin/metis-env export 1"
  [file_module]="env METIS_ENV_CONFIG_DIR=$work/file METIS_ENV_STORE=file $python -m metis_env export 1"
  [ss_script]="env METIS_ENV_CONFIG_DIR=$work/ss $bin/metis-env export 1"
  [ss_module]="env METIS_ENV_CONFIG_DIR=$work/ss $python -m metis_env export 1"
  [keyring_get]="$bin/keyring get metis-env $ref"
  [secret_tool]="secret-tool lookup service metis-env username $ref"
  [gw_script]="env $gw_env $bin/metis-env export metis"
  [gw_module]="env $gw_env $python -m metis_env export metis"
)
for name in "${names[@]:1}"; do
  key=sk-bench-canary
  [[ "$name" == gw_* ]] && key="$gw_token"
  ${cmd[$name]} | grep -qF -- "$key" || { echo "bench: '$name' did not print the key" >&2; exit 1; }
done

# The hot path's imports: none of click, yaml, keyring, paramiko, cryptography.
heavy='^(click|yaml|keyring|paramiko|cryptography|secretstorage)(\.|$)'
for store in file ss; do
  extra=()
  [[ "$store" == file ]] && extra=(METIS_ENV_STORE=file)
  imported="$(env METIS_ENV_CONFIG_DIR="$work/$store" "${extra[@]}" \
    "$python" -X importtime -m metis_env export 1 2>&1 >/dev/null |
    awk -F'|' '/^import time:/ {gsub(/^ +| +$/, "", $3); print $3}' | grep -E "$heavy" || true)"
  if [[ -n "$imported" ]]; then
    echo "bench: export ($store store) imported: $(echo "$imported" | tr '\n' ' ')" >&2; exit 1
  fi
  echo "export ($store store) imports none of click, yaml, keyring, paramiko, cryptography, secretstorage"
done

json="$work/hyperfine.json"
args=()
for name in "${names[@]}"; do args+=(-n "$name" "${cmd[$name]}"); done
hyperfine -N --warmup 5 --runs "$runs" --export-json "$json" "${args[@]}" >/dev/null 2>&1
"$python" - "$json" <<'EOF'
import json, statistics, sys
results = {r["command"]: statistics.median(r["times"]) * 1000 for r in json.load(open(sys.argv[1]))["results"]}
labels = {
    "pass": "python -c pass", "file_script": "metis-env export 1 (file store)",
    "file_module": "python -m metis_env export 1 (file store)", "ss_script": "metis-env export 1 (Secret Service)",
    "ss_module": "python -m metis_env export 1 (Secret Service)", "keyring_get": "keyring get metis-env REF",
    "secret_tool": "secret-tool lookup", "gw_script": "metis-env export metis (gateway, fresh token)",
    "gw_module": "python -m metis_env export metis (gateway)",
}
print(f"\nmedians over the runs ({sys.executable.split('/bin/')[0]}):")
for name, label in labels.items():
    print(f"  {label:48} {results[name]:7.1f} ms")
print("\nratios against issue 2's targets:")
for launcher in ("script", "module"):
    file_ratio = results[f"file_{launcher}"] / results["pass"]
    ss_ratio = results[f"ss_{launcher}"] / results["keyring_get"]
    print(f"  [{launcher}] file store / python -c pass   = {file_ratio:.2f}x (target <= 2.2x) "
          + ("ok" if file_ratio <= 2.2 else "MISSED"))
    print(f"  [{launcher}] Secret Service / keyring get = {ss_ratio:.2f}x (target <= 0.5x) "
          + ("ok" if ss_ratio <= 0.5 else "MISSED"))
print("\nratios against issue 15's target (both sources, the same run):")
for launcher in ("script", "module"):
    for source, label in (("file", "endpoint file"), ("gw", "gateway endpoint")):
        ratio = results[f"{source}_{launcher}"] / results["pass"]
        print(f"  [{launcher}] {label + ' / python -c pass':34} = {ratio:.2f}x (target <= 1.5x) " + ("ok" if ratio <= 1.5 else "MISSED"))
EOF
