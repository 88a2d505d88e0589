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

# Usage: metis-prompt   (from PROMPT_COMMAND; then ${metis_prompt} in PS1)
#
# Sets metis_prompt to a prompt segment for the variables metis-use set: the endpoint, the hours
# its token has left, and ! once it is inside the refresh margin (METIS_ENV_TOKEN_REFRESH_MARGIN,
# else 3600 s), e.g. "metis 46h" or "metis 0h!"; the endpoint alone for an endpoint file's key,
# nothing when none is set. Computed in bash from METIS_ENV_ENDPOINT and METIS_ENV_TOKEN_EXPIRES:
# it starts no program, so it costs nothing at each prompt. It keeps $?.
#
# Example (~/.bashrc):
#   PROMPT_COMMAND="metis-prompt${PROMPT_COMMAND:+;$PROMPT_COMMAND}"
#   PS1='${metis_prompt:+($metis_prompt) }'$PS1
metis-prompt() {
  local status=$? expires=${METIS_ENV_TOKEN_EXPIRES-} margin=${METIS_ENV_TOKEN_REFRESH_MARGIN-} now era y m d left
  metis_prompt=${METIS_ENV_ENDPOINT-}
  if [[ -n $metis_prompt && $expires =~ ^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z$ ]]; then
    y=$((10#${BASH_REMATCH[1]})) m=$((10#${BASH_REMATCH[2]})) d=$((10#${BASH_REMATCH[3]}))
    ((m <= 2)) && y=$((y - 1))
    # days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil)
    era=$((y / 400)) y=$((y % 400))
    d=$((era * 146097 + y * 365 + y / 4 - y / 100 + (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1 - 719468))
    printf -v now '%(%s)T' -1
    left=$((d * 86400 + 10#${BASH_REMATCH[4]} * 3600 + 10#${BASH_REMATCH[5]} * 60 + 10#${BASH_REMATCH[6]} - now))
    margin=${margin%%.*}
    [[ $margin =~ ^[0-9]+$ ]] || margin=3600
    metis_prompt+=" $((left > 0 ? left / 3600 : 0))h"
    ((left >= 10#$margin)) || metis_prompt+='!'
  fi
  return "$status"
}

# Tab completion: metis-env answers at TAB time through click's completion protocol (bash form:
# one "type,value" line per candidate); endpoint ids and models come from the metadata file alone.
# The words are read from the line as the shell reads them (not from COMP_WORDS, which bash splits
# at every character of COMP_WORDBREAKS: : = @ among them), and handed to click quoted, so that
# click sees the words the command will get. readline replaces only the end of the word (after an
# open quote, or after the last unquoted : = @ ...): each candidate is cut to that end and quoted
# for the place it goes (_metis_env_quote_for), so that a model like meta-llama/Llama-3:70b comes
# out whole and a model like zz$(touch PWNED) from an endpoint file is typed as text, never run.
# metis-use's completion sets _metis_env_command (the words that replace the command's name) and
# _metis_env_skip (values not to offer).
_metis_env_complete() {
  local type value line=${COMP_LINE-} quote word kept full skip=${_metis_env_skip-} arg click
  local -a words
  COMPREPLY=()
  _metis_env_scan "${line:0:${COMP_POINT:-${#line}}}"
  ((${#words[@]})) || return 0
  words=("${_metis_env_command[@]:-metis-env}" "${words[@]:1}")
  for arg in "${words[@]}" "$word"; do
    click+=" '${arg//\'/\'\\\'\'}'"  # ' -> '\'': click splits this as the shell would
  done
  while IFS=, read -r type value; do
    case $type in
      plain)
        [[ " $skip " != *" $value "* ]] || continue
        full=$value
        case $word in  # click completes --option=VALUE and a lone = with the value alone
          -*=*) full=${word%%=*}=$value ;;
          =) full="=$value" ;;
        esac
        [[ $full == "$kept"* ]] || continue
        _metis_env_quote_for "$quote" "${full:${#kept}}" && COMPREPLY+=("$REPLY") ;;
      dir) compopt -o dirnames 2>/dev/null ;;
      file) compopt -o default 2>/dev/null ;;
    esac
  done < <(COMP_WORDS=$click COMP_CWORD=${#words[@]} _METIS_ENV_COMPLETE=bash_complete command metis-env 2>/dev/null)
  return 0
}

# Usage: _metis_env_scan TEXT
#
# Reads TEXT (the command line up to the cursor) as the shell does and sets, in the caller: words
# (the words before the cursor's, unquoted), word (the cursor's word so far, unquoted), quote (the
# quote it leaves open: empty, ' or "), and kept (the start of word that readline keeps when it
# inserts a candidate: up to the open quote, else up to the last unquoted character of
# COMP_WORDBREAKS). quote is ? where readline's reading and the shell's may differ ($'...', whose
# \' readline does not know, and $( ${ ` whose nested quotes it does not see): there no candidate
# can be quoted for sure, and only names that need no quoting are offered.
_metis_env_scan() {
  local text=$1 breaks=${COMP_WORDBREAKS-} i=0 c started='' opened=''
  words=() word='' quote='' kept=''
  while ((i < ${#text})); do
    c=${text:i:1}
    i=$((i + 1))
    case $quote$c in
      \\)  # the next character is itself (a backslash-newline is nothing)
        c=${text:i:1}
        i=$((i + 1))
        [[ $c == $'\n' ]] || word+=$c
        started=1 ;;
      \"\\)  # in "...", \ escapes only $ ` " \ and newline
        c=${text:i:1}
        case $c in
          [\$\`\"\\]) word+=$c; i=$((i + 1)) ;;
          $'\n') i=$((i + 1)) ;;
          *) word+=\\ ;;
        esac ;;
      \' | \") opened=$word quote=$c started=1 ;;
      \'\' | \"\") quote='' ;;
      [[:space:]])
        [[ -z $started ]] || words+=("$word")
        word='' kept='' started='' ;;
      *)
        # readline keeps a break character in the replaced end when it is $ or @ (bash's
        # rl_special_prefixes, for $VAR and @host completion), the others in the kept start
        if [[ -z $quote && $breaks == *"$c"* ]]; then
          kept=$word
          [[ $c == [\$@] ]] || kept+=$c
        fi
        word+=$c
        started=1 ;;
    esac
  done
  [[ -z $quote ]] || kept=$opened
  case $text in
    *"\$'"* | *"\$("* | *"\${"* | *'`'*) quote='?' ;;
  esac
}

# Usage: _metis_env_quote_for QUOTE VALUE
#
# Sets REPLY to VALUE written so that, typed after the open QUOTE (see _metis_env_scan), the
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

# metis-use takes what metis-env export takes, less the options it refuses: complete it as
# "metis-env export ...".
_metis_use_complete() {
  local -a _metis_env_command=(metis-env export)
  local _metis_env_skip='--shell -s --output -o --unset'
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
