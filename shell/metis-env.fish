# metis-env for fish: metis-use, metis-unuse, and tab completion for metis-env.
#
# Usage: metis-env hook fish --install   (writes ~/.config/fish/conf.d/metis-env.fish; fish sources it)
#    or: source /path/to/metis-env.fish  (the path: metis-env hook fish --path)
#
# Sourcing defines functions and completions and nothing else: it runs no program, prints nothing,
# keeps $status, and sourcing it again changes nothing.

set -l __metis_env_status $status

# Usage: metis-use [ENDPOINT] [--model NAME]
#
# Sets the variables of `metis-env export` (OPENAI_BASE_URL, OPENAI_API_KEY, MODEL_NAME, ...) in this
# shell from the stored endpoint (see metis-env export --help). When metis-env fails, its error is on
# stderr, the variables already set are left as they were, and the status is metis-env's.
#
# Example:
#   metis-use 1 --model Llama-4-Maverick-17B-128E-Instruct
function metis-use --description 'Set the OpenAI variables of a Metis endpoint in this shell'
    # export's --shell, --output and --unset would be ignored or break the source: refuse them.
    for arg in $argv
        switch $arg
            case '--'
                break
            case --shell '--shell=*' -s '-s?*' --output '--output=*' -o '-o?*' --unset
                printf '%s\n' "metis-use: $arg is an option of metis-env export; metis-use sets this shell's variables (metis-unuse removes them)" >&2
                return 2
        end
    end
    # Capture first (one element per line; metis-env's status is kept): a failing export must change nothing.
    set -l code (command metis-env export $argv --shell fish)
    or return
    printf '%s\n' $code | source
end

# Usage: metis-unuse
#
# Removes the variables metis-use sets.
function metis-unuse --description 'Remove the variables metis-use sets'
    set -l code (command metis-env export --unset --shell fish)
    or return
    printf '%s\n' $code | source
end

# Usage: metis-prompt [FORMAT]   (inside fish_prompt; FORMAT a printf format, default %s)
#
# Prints a prompt segment for the variables metis-use set: the endpoint, the hours its token has
# left, and ! once it is inside the refresh margin (METIS_ENV_TOKEN_REFRESH_MARGIN, else 3600 s),
# e.g. "metis 46h" or "metis 0h!"; the endpoint alone for an endpoint file's key, nothing when none
# is set. Computed in fish (builtins only: the clock is read with fish 3.5's `path mtime`) from
# METIS_ENV_ENDPOINT and METIS_ENV_TOKEN_EXPIRES: it starts no program. It prints nothing when
# there is no segment, and keeps $status, so that the prompt after it still sees the last command's.
#
# Example (~/.config/fish/config.fish): your prompt as it is, with the segment in front
#   functions --copy fish_prompt __my_prompt
#   function fish_prompt; metis-prompt '(%s) '; __my_prompt; end
function metis-prompt --description 'Print the metis-env endpoint and the hours its token has left'
    set -l last $status
    set -l format $argv[1]
    set -q argv[1]; or set format '%s'
    set -q METIS_ENV_ENDPOINT[1]; and test -n "$METIS_ENV_ENDPOINT"; or return $last
    set -l segment $METIS_ENV_ENDPOINT
    set -l parts (string match -rg '^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$' -- "$METIS_ENV_TOKEN_EXPIRES")
    if test (count $parts) -eq 6; and builtin -q path
        set -l y (math $parts[1])
        set -l m (math $parts[2])
        test $m -le 2; and set y (math $y - 1)
        # days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil)
        set -l era (math "floor($y / 400)")
        set y (math "$y % 400")
        set -l shifted (math "$m + 9"); test $m -gt 2; and set shifted (math "$m - 3")
        set -l days (math "$era * 146097 + $y * 365 + floor($y / 4) - floor($y / 100) + floor((153 * $shifted + 2) / 5) + $parts[3] - 1 - 719468")
        # now: a file's mtime plus the seconds since it
        set -l now (math (path mtime -- /) + (path mtime --relative -- /))
        set -l left (math "$days * 86400 + $parts[4] * 3600 + $parts[5] * 60 + $parts[6] - $now")
        set -l margin (string replace -r '\..*' '' -- "$METIS_ENV_TOKEN_REFRESH_MARGIN")
        string match -qr '^\d+$' -- "$margin"; or set margin 3600
        set segment "$segment "(math "floor(max($left, 0) / 3600)")h
        test $left -ge $margin; or set segment "$segment!"
    end
    printf $format $segment
    return $last
end

# Tab completion: metis-env answers at TAB time through click's completion protocol. This uses the
# protocol's zsh form (type, value and description on three lines per candidate): it is the same in
# every click 8 release, where the fish form changed, and it carries the descriptions fish shows.
# With an argument, the command's first word is replaced by it (metis-use completes as export).
function __metis_env_complete --description 'Ask metis-env for completions of the command line'
    set -l words (commandline -opc)
    set -l current (commandline -ct)
    if set -q argv[1]
        set words $argv $words[2..-1]
    end
    # click splits COMP_WORDS as a POSIX shell, with "\$" left as it is: hand it the words as fish
    # reads them (the cursor's too, its open quote closed), each in '...'.
    set -l click
    for word in $words (string unescape -- $current; or printf '%s\n' $current)
        set -a click "'"(string replace -a "'" "'\\''" -- $word)"'"
    end
    set -l response (env COMP_WORDS="$click" COMP_CWORD=(count $words) _METIS_ENV_COMPLETE=zsh_complete metis-env 2>/dev/null)
    for i in (seq 1 3 (count $response))
        set -l type $response[$i]
        set -l value (string replace -a '\\:' ':' -- $response[(math $i + 1)])
        set -l help $response[(math $i + 2)]
        switch $type
            case plain
                if test "$help" = _
                    printf '%s\n' $value
                else
                    printf '%s\t%s\n' $value $help
                end
            case dir
                __fish_complete_directories $current
            case file
                __fish_complete_path $current
        end
    end
end

# metis-use takes what metis-env export takes, less the options it refuses.
function __metis_use_complete --description 'Ask metis-env for completions of a metis-use command line'
    __metis_env_complete metis-env export | string match --regex --invert -- '^(--shell|-s|--output|-o|--unset)(\t|$)'
end

complete --erase --command metis-env
complete --command metis-env --no-files --arguments '(__metis_env_complete)'
complete --erase --command metis-use
complete --command metis-use --no-files --arguments '(__metis_use_complete)'

function __metis_env_return
    functions --erase __metis_env_return
    return $argv[1]
end
__metis_env_return $__metis_env_status
