# shellcheck shell=bash
#
# metis-env for bash: metis-use, metis-unuse, and tab completion for metis-env.
#
# Usage: source ~/.local/share/metis-env/metis-env.bash   (written by: metis-env hook bash --install)
#    or: eval "$(metis-env hook bash)"                      (costs one metis-env start per shell)
#
# Sourcing defines functions and nothing else: it runs no program, prints nothing, keeps $?, and
# sourcing it again changes nothing.

__metis_env_status=$?

# Usage: metis-use [ENDPOINT] [--model NAME]
#
# Sets the variables of `metis-env export` (OPENAI_BASE_URL, OPENAI_API_KEY, MODEL_NAME, ...) in this
# shell from the stored endpoint (see metis-env export --help). When metis-env fails, its error is on
# stderr, the variables already set are left as they were, and the status is metis-env's.
#
# Example:
#   metis-use 1 --model Llama-4-Maverick-17B-128E-Instruct
metis-use() {
  local code arg
  # export's --shell, --output and --unset would be ignored or break the eval: refuse them.
  for arg in "$@"; do
    case $arg in
      --) break ;;
      --shell|--shell=*|-s|-s?*|--output|--output=*|-o|-o?*|--unset)
        printf '%s\n' "metis-use: $arg is an option of metis-env export; metis-use sets this shell's variables (metis-unuse removes them)" >&2
        return 2 ;;
    esac
  done
  # Capture first: eval "$(...)" would hide a failure behind eval's own status.
  code=$(command metis-env export "$@" --shell bash) || return
  eval "$code"
}

# Usage: metis-unuse
#
# Removes the variables metis-use sets.
metis-unuse() {
  local code
  code=$(command metis-env export --unset --shell bash) || return
  eval "$code"
}

# Tab completion: metis-env answers at TAB time through click's completion protocol (bash form:
# one "type,value" line per candidate); endpoint ids and models come from the metadata file alone.
# readline inserts a candidate as it is: each is quoted (%q), so that a model name like
# zz$(touch PWNED) from an endpoint file is typed as text, never run on Enter. A word the user began
# with a quote is left to readline, which closes that quote itself.
_metis_env_complete() {
  local type value quoted
  COMPREPLY=()
  while IFS=, read -r type value; do
    case $type in
      plain)
        case ${COMP_WORDS[COMP_CWORD]-} in
          \'*|\"*) COMPREPLY+=("$value") ;;
          *) printf -v quoted '%q' "$value"; COMPREPLY+=("$quoted") ;;
        esac ;;
      dir) compopt -o dirnames 2>/dev/null ;;
      file) compopt -o default 2>/dev/null ;;
    esac
  done < <(COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD="$COMP_CWORD" _METIS_ENV_COMPLETE=bash_complete \
    command metis-env 2>/dev/null)
  return 0
}

# metis-use takes what metis-env export takes: complete it as "metis-env export ...".
_metis_use_complete() {
  local -a COMP_WORDS=(metis-env export "${COMP_WORDS[@]:1}")
  local COMP_CWORD=$((COMP_CWORD + 1))
  local -a offered
  local candidate
  _metis_env_complete
  for candidate in "${COMPREPLY[@]}"; do  # export's options metis-use refuses are not offered
    case $candidate in --shell|--output|--unset|-s|-o) ;; *) offered+=("$candidate") ;; esac
  done
  COMPREPLY=("${offered[@]}")
}

complete -o nosort -F _metis_env_complete metis-env 2>/dev/null || complete -F _metis_env_complete metis-env
complete -o nosort -F _metis_use_complete metis-use 2>/dev/null || complete -F _metis_use_complete metis-use

__metis_env_return() {
  unset -v __metis_env_status
  unset -f __metis_env_return
  return "$1"
}
__metis_env_return "$__metis_env_status"
