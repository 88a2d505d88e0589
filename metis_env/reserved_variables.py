"""Variable names the ``aliases`` setting may not take: names that change how a shell or a program runs.

``aliases PATH=OPENAI_API_KEY`` would make ``export`` set PATH to the key (``run`` then finds no
command, ``export --unset`` prints ``unset PATH;``); ``LD_PRELOAD``, ``PYTHONSTARTUP``, ``BASH_ENV`` or a
proxy variable would make every program started afterwards load, run or send something else. An alias
only ever needs a name of its own (``GROQ_API_KEY``), so these are refused, each with the reason.
Pure; standard library only, nothing imported.
"""

from __future__ import annotations

_SHELL = "it changes how the shell itself runs"
_LOADER = "it makes every program load code from elsewhere"
_INTERPRETER = "it makes an interpreter run or load code from elsewhere"
_PROXY = "it sends requests, the key with them, through another host"
_TLS = "it changes which servers TLS trusts"
_HOME = "it moves where programs read their configuration (metis-env's own included)"
_PROGRAM = "programs run the command it names"

_EXACT = {
    "PATH": "it decides which programs run",
    "HOME": _HOME,
    "SHELL": "programs start it as the user's shell",
    "TMPDIR": "programs write their temporary files there",
    "TMP": "programs write their temporary files there",
    "TEMP": "programs write their temporary files there",
    "TEMPDIR": "programs write their temporary files there",
    "IFS": _SHELL,
    "PS1": _SHELL,
    "PS2": _SHELL,
    "PS3": _SHELL,
    "PS4": _SHELL,
    "PROMPT_COMMAND": _SHELL,
    "BASH_ENV": "every bash script runs the file it names",
    "ENV": "every interactive sh runs the file it names",
    "CDPATH": _SHELL,
    "FPATH": _SHELL,
    "ZDOTDIR": _SHELL,
    "GLOBIGNORE": _SHELL,
    "SHELLOPTS": _SHELL,
    "BASHOPTS": _SHELL,
    "EXECIGNORE": _SHELL,
    "HISTFILE": _SHELL,
    "MAILPATH": _SHELL,
    "POSIXLY_CORRECT": _SHELL,
    "PWD": _SHELL,
    "OLDPWD": _SHELL,
    "SHLVL": _SHELL,
    "USER": "programs take it for the user's name",
    "LOGNAME": "programs take it for the user's name",
    "_": _SHELL,
    "GCONV_PATH": _LOADER,
    "GLIBC_TUNABLES": _LOADER,
    "LOCPATH": _LOADER,
    "NLSPATH": _LOADER,
    "LANG": "it changes how programs read and write text",
    "LANGUAGE": "it changes how programs read and write text",
    "TERM": "it changes how programs drive the terminal",
    "HOSTALIASES": "it changes where host names resolve",
    "RES_OPTIONS": "it changes where host names resolve",
    "LOCALDOMAIN": "it changes where host names resolve",
    "DBUS_SESSION_BUS_ADDRESS": "it changes which keyring programs (metis-env included) talk to",
    "SSH_ASKPASS": _PROGRAM,
    "SUDO_ASKPASS": _PROGRAM,
    "EDITOR": _PROGRAM,
    "VISUAL": _PROGRAM,
    "PAGER": _PROGRAM,
    "MANPAGER": _PROGRAM,
    "BROWSER": _PROGRAM,
    "LESSOPEN": _PROGRAM,
    "LESSCLOSE": _PROGRAM,
    "PERLLIB": _INTERPRETER,
    "NODE_OPTIONS": _INTERPRETER,
    "NODE_PATH": _INTERPRETER,
    "JAVA_TOOL_OPTIONS": _INTERPRETER,
    "_JAVA_OPTIONS": _INTERPRETER,
    "JDK_JAVA_OPTIONS": _INTERPRETER,
    "CLASSPATH": _INTERPRETER,
    "TCLLIBPATH": _INTERPRETER,
    "NODE_EXTRA_CA_CERTS": _TLS,
    "REQUESTS_CA_BUNDLE": _TLS,
    "CURL_CA_BUNDLE": _TLS,
    "CURL_HOME": _HOME,
    "WGETRC": _HOME,
    "NETRC": _HOME,
}
_PREFIXES = (
    ("LD_", _LOADER),
    ("DYLD_", _LOADER),
    ("LC_", "it changes how programs read and write text"),
    ("PYTHON", "it changes how Python starts (code it runs, modules it finds)"),
    ("PERL5", _INTERPRETER),
    ("RUBY", _INTERPRETER),
    ("LUA_", _INTERPRETER),
    ("BASH_", _SHELL),
    ("HIST", _SHELL),
    ("TERMINFO", "it changes how programs drive the terminal"),
    ("SSL_", _TLS),
    ("OPENSSL_", _LOADER),
    ("GIT_", "git runs the commands and reads the files it names"),
    ("XDG_", _HOME),
    ("METIS_ENV_", "it is one of metis-env's own settings"),
)
_ANY_CASE = {"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy"}


def why_reserved(name: str) -> str | None:
    """Why ``name`` may not be an alias (one clause), or None when it may."""
    if name.lower() in _ANY_CASE:
        return _PROXY
    if name in _EXACT:
        return _EXACT[name]
    for prefix, reason in _PREFIXES:
        if name.startswith(prefix):
            return reason
    return None
