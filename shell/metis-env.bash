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
  local code
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
# readline inserts a candidate as it is, inside whatever quote the user opened: each is quoted for
# that place (_metis_env_quote_for), so that a model name like zz$(touch PWNED) from an endpoint
# file is typed as text, never run on Enter.
_metis_env_complete() {
  local type value line=${COMP_LINE-} quote
  COMPREPLY=()
  _metis_env_open_quote "${line:0:${COMP_POINT:-${#line}}}"
  quote=$REPLY
  while IFS=, read -r type value; do
    case $type in
      plain)
        _metis_env_quote_for "$quote" "$value" && COMPREPLY+=("$REPLY") ;;
      dir) compopt -o dirnames 2>/dev/null ;;
      file) compopt -o default 2>/dev/null ;;
    esac
  done < <(COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD="$COMP_CWORD" _METIS_ENV_COMPLETE=bash_complete \
    command metis-env 2>/dev/null)
  return 0
}

# Usage: _metis_env_open_quote TEXT
#
# Sets REPLY to the quote TEXT (the line up to the cursor) leaves open, as readline finds it to
# insert a candidate after it: empty, ' or ". REPLY is ? where readline's reading and the shell's
# may differ ($'...', whose \' readline does not know, and $( ${ ` whose nested quotes it does not
# see): there no candidate can be quoted for sure, and only names that need no quoting are offered.
_metis_env_open_quote() {
  local text=$1 state='' i=0 c
  case $text in
    *"\$'"* | *"\$("* | *"\${"* | *'`'*) REPLY='?'; return 0 ;;
  esac
  while ((i < ${#text})); do
    c=${text:i:1}
    i=$((i + 1))
    case $state$c in
      \\ | \"\\) i=$((i + 1)) ;;  # the next character is escaped (in "..." too)
      \' | \") state=$c ;;
      \'\' | \"\") state='' ;;
    esac
  done
  REPLY=$state
}

# Usage: _metis_env_quote_for QUOTE VALUE
#
# Sets REPLY to VALUE written so that, typed after the open QUOTE (see _metis_env_open_quote), the
# shell reads it back as VALUE and runs nothing; fails for a VALUE that cannot be (QUOTE ?).
_metis_env_quote_for() {
  local value=$2
  case $1 in
    '') printf -v REPLY '%q' "$value" ;;
    \') REPLY=${value//\'/\'\\\'\'} ;;  # ' -> '\''
    \")
      value=${value//\\/\\\\}
      value=${value//\$/\\\$}
      value=${value//\`/\\\`}
      value=${value//\"/\\\"}
      REPLY=${value//!/\"\'!\'\"} ;;  # ! -> "'!'": history expansion stops only at single quotes
    *)
      [[ $value != *[!A-Za-z0-9_.,/@%+=:-]* ]] || return 1
      REPLY=$value ;;
  esac
}

# metis-use takes what metis-env export takes: complete it as "metis-env export ...".
_metis_use_complete() {
  local -a COMP_WORDS=(metis-env export "${COMP_WORDS[@]:1}")
  local COMP_CWORD=$((COMP_CWORD + 1))
  _metis_env_complete
}

complete -o nosort -F _metis_env_complete metis-env 2>/dev/null || complete -F _metis_env_complete metis-env
complete -o nosort -F _metis_use_complete metis-use 2>/dev/null || complete -F _metis_use_complete metis-use

__metis_env_return() {
  unset -v __metis_env_status
  unset -f __metis_env_return
  return "$1"
}
__metis_env_return "$__metis_env_status"
