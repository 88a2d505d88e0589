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

# Usage: metis-prompt   (in precmd_functions; then ${metis_prompt} in PROMPT, with prompt_subst)
#
# Sets metis_prompt to a prompt segment for the variables metis-use set: the endpoint, the hours
# its token has left, and ! once it is inside the refresh margin (METIS_ENV_TOKEN_REFRESH_MARGIN,
# else 3600 s), e.g. "metis 46h" or "metis 0h!"; the endpoint alone for an endpoint file's key,
# nothing when none is set. Computed in zsh from METIS_ENV_ENDPOINT and METIS_ENV_TOKEN_EXPIRES:
# it starts no program, so it costs nothing at each prompt. It keeps $?.
#
# Example (~/.zshrc):
#   setopt prompt_subst; precmd_functions+=(metis-prompt)
#   PROMPT='${metis_prompt:+($metis_prompt) }'$PROMPT
metis-prompt() {
  local last=$?
  emulate -L zsh
  local expires=${METIS_ENV_TOKEN_EXPIRES-} margin=${METIS_ENV_TOKEN_REFRESH_MARGIN-} era y m d left
  typeset -g metis_prompt=${METIS_ENV_ENDPOINT-}
  if [[ -n $metis_prompt && $expires =~ '^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z$' ]]; then
    zmodload -F zsh/datetime p:EPOCHSECONDS 2>/dev/null || return $last
    (( y = 10#$match[1], m = 10#$match[2], d = 10#$match[3] ))
    (( m <= 2 )) && (( y -= 1 ))
    # days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil)
    (( era = y / 400, y = y % 400 ))
    (( d = era * 146097 + y * 365 + y / 4 - y / 100 + (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1 - 719468 ))
    (( left = d * 86400 + 10#$match[4] * 3600 + 10#$match[5] * 60 + 10#$match[6] - EPOCHSECONDS ))
    margin=${margin%%.*}
    [[ $margin == <-> ]] || margin=3600
    metis_prompt+=" $(( left > 0 ? left / 3600 : 0 ))h"
    (( left >= 10#$margin )) || metis_prompt+='!'
  fi
  return $last
}

# Tab completion: metis-env answers at TAB time through click's completion protocol (zsh form:
# type, value and description on three lines per candidate); endpoint ids and models come from the
# metadata file alone.
_metis_env_completion() {
  emulate -L zsh
  local -a response described plain
  local type key descr word click
  (( $+commands[metis-env] )) || return 1
  # click splits COMP_WORDS as a POSIX shell without $'...' and with "\$" left as it is: hand it
  # the words as zsh reads them (the open quote of the cursor's word closed), each in '...'.
  for word in "${(@)words[1,CURRENT-1]}" "$words[CURRENT]$compstate[quote]"; do
    click+=" ${(qq)${(Q)word}}"
  done
  response=("${(@f)$(COMP_WORDS=$click COMP_CWORD=$((CURRENT - 1)) _METIS_ENV_COMPLETE=zsh_complete \
    command metis-env 2>/dev/null)}")
  for type key descr in "${response[@]}"; do
    case $type in
      plain)
        (( ${_metis_env_skip[(Ie)$key]:-0} )) && continue  # what metis-use refuses
        if [[ $descr == _ ]]; then
          plain+=("$key")
        else
          # _describe reads \ and \: as escapes: click escapes only the colons, so a name holding a
          # backslash would lose it. Written again with both escaped, it arrives byte for byte.
          key=${key//\\:/:}
          key=${key//\\/\\\\}
          described+=("${key//:/\\:}:$descr")
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

# metis-use takes what metis-env export takes, less the options it refuses: complete it as
# "metis-env export ...".
_metis_use_completion() {
  local -a _metis_env_skip=(--shell -s --output -o --unset)
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
