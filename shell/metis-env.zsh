# metis-env for zsh: metis-use, metis-unuse, and tab completion for metis-env.
#
# Usage: source ~/.local/share/metis-env/metis-env.zsh   (written by: metis-env hook zsh --install)
#    or: eval "$(metis-env hook zsh)"                      (costs one metis-env start per shell)
# Source it after compinit, so that the completion can register itself.
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
  emulate -L zsh
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
  code=$(command metis-env export "$@" --shell zsh) || return
  eval "$code"
}

# Usage: metis-unuse
#
# Removes the variables metis-use sets.
metis-unuse() {
  emulate -L zsh
  local code
  code=$(command metis-env export --unset --shell zsh) || return
  eval "$code"
}

# Tab completion: metis-env answers at TAB time through click's completion protocol (zsh form:
# type, value and description on three lines per candidate); endpoint ids and models come from the
# metadata file alone.
_metis_env_completion() {
  emulate -L zsh
  local -a response described plain
  local type key descr
  (( $+commands[metis-env] )) || return 1
  response=("${(@f)$(COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT - 1)) _METIS_ENV_COMPLETE=zsh_complete \
    command metis-env 2>/dev/null)}")
  for type key descr in "${response[@]}"; do
    case $type in
      plain)
        if [[ $descr == _ ]]; then
          plain+=("$key")
        else
          described+=("$key:$descr")
        fi
        ;;
      dir) _path_files -/ ;;
      file) _path_files -f ;;
    esac
  done
  (( $#described )) && _describe -V unsorted described -U
  (( $#plain )) && compadd -U -V unsorted -a plain
  return 0
}

# metis-use takes what metis-env export takes: complete it as "metis-env export ...".
_metis_use_completion() {
  words=(metis-env export "${(@)words[2,-1]}")
  (( CURRENT += 1 ))
  _metis_env_completion
}

if (( $+functions[compdef] )); then
  compdef _metis_env_completion metis-env
  compdef _metis_use_completion metis-use
fi

__metis_env_return() {
  unset __metis_env_status
  unfunction __metis_env_return
  return "$1"
}
__metis_env_return "$__metis_env_status"
