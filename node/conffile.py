"""Reader for postgresql.conf-style files, with the semantics of PostgreSQL 15's guc-file.l.

What it does: lexes a configuration file exactly as guc-file.l's flex rules do (longest match,
ties go to the earlier rule), accepts `name = value` / `name value` lines, `#` comments, quoted
strings with guc-file.l's de-escaping, and expands `include`, `include_if_exists` and
`include_dir` (relative to the including file, nesting limit 10). It returns every item in file
order, duplicates included: the consumer applies them in order, so the last one wins.

What it deliberately does not do: validate names or values (that is node.guc's job, and what
PostgreSQL's ProcessConfigFileInternal does after parsing), log anything, or keep state between
calls. Names keep the spelling of the file, as in PostgreSQL (ParseConfigFp does not fold
case; every consumer compares names case-insensitively).

Errors: like PostgreSQL, parsing goes on after a syntax error (resyncing at the next end of
line, giving up on a file after 100 errors) so that every problem is reported at once; if any
problem was found, ConfigFileError is raised at the end. Its message/filename/lineno describe
the first problem, and `.problems` lists them all, each with PostgreSQL's text and SQLSTATE.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from os import PathLike

CONF_FILE_MAX_DEPTH = 10
_MAX_SYNTAX_ERRORS = 100

_EOF, _ID, _STRING, _INTEGER, _REAL, _EQUALS, _UNQUOTED, _QUALIFIED, _EOL, _ERROR = (
    0, 1, 2, 3, 4, 5, 6, 7, 99, 100,
)
_VALUE_TOKENS = frozenset({_ID, _STRING, _INTEGER, _REAL, _UNQUOTED})

# The file is lexed as latin-1 text so that guc-file.l's byte classes (\200-\377 count as
# letters) map one-to-one onto characters; strings are turned back into UTF-8 afterwards.
_LETTER = r"A-Za-z_\x80-\xff"
_ID_RX = rf"[{_LETTER}][{_LETTER}0-9]*"
_SKIP = re.compile(r"[ \t\r]+|#[^\n]*")
# Rule order matters: on equal match lengths flex picks the earlier rule.
_RULES: tuple[tuple[int, re.Pattern[str]], ...] = (
    (_ID, re.compile(_ID_RX)),
    (_QUALIFIED, re.compile(rf"{_ID_RX}\.{_ID_RX}")),
    (_STRING, re.compile(r"'(?:[^'\\\n]|\\.|'')*'")),
    (_UNQUOTED, re.compile(rf"[{_LETTER}][{_LETTER}0-9\-._:/]*")),
    (_INTEGER, re.compile(r"[-+]?(?:0x[0-9a-fA-F]+|[0-9]+)[a-zA-Z]*")),
    (_REAL, re.compile(r"[-+]?[0-9]*\.[0-9]*(?:[Ee][-+]?[0-9]+)?")),
    (_EQUALS, re.compile(r"=")),
)


class ConfigItem(NamedTuple):
    """One `name = value` line; filename is absolute, lineno 1-based."""

    name: str
    value: str
    filename: str
    lineno: int


class ConfigProblem(NamedTuple):
    """One error found while reading; message is PostgreSQL's text."""

    message: str
    filename: str
    lineno: int
    sqlstate: str


class ConfigFileError(Exception):
    """Raised after parsing when at least one problem was found."""

    def __init__(
        self,
        message: str,
        filename: str,
        lineno: int,
        *,
        sqlstate: str = "42601",
        problems: list[ConfigProblem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.lineno = lineno
        self.sqlstate = sqlstate
        self.problems: list[ConfigProblem] = (
            problems if problems is not None else [ConfigProblem(message, filename, lineno, sqlstate)]
        )


def _utf8(text: str) -> str:
    return text.encode("latin-1").decode("utf-8", errors="replace")


class _Lexer:
    """guc-file.l's scanner; `lineno` follows ConfigFileLineno (bumped when a newline is lexed)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lineno = 1
        self.yytext = ""

    def lex(self) -> int:
        text = self.text
        while True:
            if self.pos >= len(text):
                self.yytext = ""
                return _EOF
            m = _SKIP.match(text, self.pos)
            if m is None:
                break
            self.pos = m.end()
        start = self.pos
        if text[start] == "\n":
            self.pos += 1
            self.lineno += 1
            self.yytext = "\n"
            return _EOL
        best_tok, best_end = _ERROR, start + 1
        best_len = 0
        for tok, rx in _RULES:
            m = rx.match(text, start)
            if m is not None and m.end() - start > best_len:
                best_tok, best_end, best_len = tok, m.end(), m.end() - start
        self.pos = best_end
        self.yytext = text[start:best_end]
        return best_tok


def _deescape(s: str) -> str:
    """DeescapeQuotedString: strip the quotes, undo '' and backslash escapes."""
    body = s[1:-1]
    out: list[str] = []
    i = 0
    n = len(body)
    simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    while i < n:
        c = body[i]
        if c == "\\" and i + 1 < n:
            i += 1
            c = body[i]
            if c in simple:
                out.append(simple[c])
            elif "0" <= c <= "7":
                k = 0
                val = 0
                while k < 3 and i + k < n and "0" <= body[i + k] <= "7":
                    val = (val << 3) + ord(body[i + k]) - 48
                    k += 1
                i += k - 1
                out.append(chr(val & 0xFF))  # C stores it in a char
            else:
                out.append(c)
        elif c == "'" and i + 1 < n and body[i + 1] == "'":
            i += 1
            out.append("'")
        else:
            out.append(c)
        i += 1
    result = "".join(out)
    nul = result.find("\0")
    if nul >= 0:  # the C string ends at an embedded NUL
        result = result[:nul]
    return _utf8(result)


def _absolute(location: str, calling_file: str | None) -> str:
    """AbsoluteConfigLocation: relative names are relative to the including file's directory."""
    if os.path.isabs(location):
        return os.path.normpath(location)
    if calling_file is not None:
        return os.path.normpath(os.path.join(os.path.dirname(calling_file), location))
    return os.path.normpath(os.path.abspath(location))


def _file_access_sqlstate(err: OSError) -> str:
    if err.errno == _errno.ENOENT:
        return "58P01"
    if err.errno in (_errno.EACCES, _errno.EPERM):
        return "42501"
    return "58030"


class _Parser:
    def __init__(self, notices: list[str] | None) -> None:
        self.items: list[ConfigItem] = []
        self.problems: list[ConfigProblem] = []
        self.notices = notices

    def problem(self, message: str, filename: str, lineno: int, sqlstate: str) -> None:
        self.problems.append(ConfigProblem(message, filename, lineno, sqlstate))

    def parse_file(
        self, config_file: str, strict: bool, calling_file: str | None, calling_lineno: int, depth: int
    ) -> bool:
        where = calling_file if calling_file is not None else config_file
        if depth > CONF_FILE_MAX_DEPTH:
            self.problem(
                f'could not open configuration file "{config_file}": maximum nesting depth exceeded',
                where, calling_lineno, "54000",
            )
            return False
        if config_file.strip(" \t\r\n") == "":
            self.problem(f'empty configuration file name: "{config_file}"', where, calling_lineno, "22023")
            return False
        abs_path = _absolute(config_file, calling_file)
        if calling_file is not None and abs_path == calling_file:
            self.problem(f'configuration file recursion in "{calling_file}"', where, calling_lineno, "22023")
            return False
        try:
            with open(abs_path, "rb") as f:
                data = f.read()
        except OSError as e:
            if strict:
                self.problem(
                    f'could not open configuration file "{abs_path}": {e.strerror}',
                    calling_file if calling_file is not None else abs_path,
                    calling_lineno, _file_access_sqlstate(e),
                )
                return False
            if self.notices is not None:
                self.notices.append(f'skipping missing configuration file "{abs_path}"')
            return True
        return self.parse_text(data.decode("latin-1"), abs_path, depth)

    def parse_directory(self, includedir: str, calling_file: str, calling_lineno: int, depth: int) -> bool:
        if includedir.strip(" \t\r\n") == "":
            self.problem(
                f'empty configuration directory name: "{includedir}"', calling_file, calling_lineno, "22023"
            )
            return False
        directory = _absolute(includedir, calling_file)
        try:
            names = os.listdir(directory)
        except OSError as e:
            self.problem(
                f'could not open configuration directory "{directory}": {e.strerror}',
                calling_file, calling_lineno, _file_access_sqlstate(e),
            )
            return False
        files: list[str] = []
        for name in names:
            # hidden files are skipped so editor backups like .foo.conf.swp never get read
            if name.startswith(".") or len(name) < 6 or not name.endswith(".conf"):
                continue
            full = os.path.join(directory, name)
            if not os.path.isdir(full):
                files.append(full)
        files.sort()
        return all(self.parse_file(f, True, calling_file, calling_lineno, depth) for f in files)

    def parse_text(self, text: str, config_file: str, depth: int) -> bool:
        lx = _Lexer(text)
        ok = True
        errorcount = 0
        while True:
            tok = lx.lex()
            if tok == _EOF:
                break
            if tok == _EOL:
                continue
            if tok in (_ID, _QUALIFIED):
                opt_name = _utf8(lx.yytext)
                tok = lx.lex()
                if tok == _EQUALS:
                    tok = lx.lex()
                if tok in _VALUE_TOKENS:
                    opt_value = _deescape(lx.yytext) if tok == _STRING else _utf8(lx.yytext)
                    tok = lx.lex()
                    if tok == _EOL or tok == _EOF:
                        if tok == _EOF:
                            lx.lineno += 1  # treat EOF like \n for line numbering (PG bug 4752)
                        if not self.directive(opt_name, opt_value, config_file, lx.lineno - 1, depth):
                            ok = False
                        if tok == _EOF:
                            break
                        continue
            # fall through: a syntax error on this line
            if tok == _EOL or tok == _EOF:
                self.problem(
                    f'syntax error in file "{config_file}" line {lx.lineno - 1}, near end of line',
                    config_file, lx.lineno - 1, "42601",
                )
            else:
                self.problem(
                    f'syntax error in file "{config_file}" line {lx.lineno}, '
                    f'near token "{_utf8(lx.yytext)}"',
                    config_file, lx.lineno, "42601",
                )
            ok = False
            errorcount += 1
            if errorcount >= _MAX_SYNTAX_ERRORS:
                self.problem(
                    f'too many syntax errors found, abandoning file "{config_file}"',
                    config_file, lx.lineno, "42601",
                )
                break
            while tok != _EOL and tok != _EOF:
                tok = lx.lex()
            if tok == _EOF:
                break
        return ok

    def directive(self, name: str, value: str, config_file: str, lineno: int, depth: int) -> bool:
        lname = name.lower()
        if lname == "include_dir":
            return self.parse_directory(value, config_file, lineno, depth + 1)
        if lname == "include_if_exists":
            return self.parse_file(value, False, config_file, lineno, depth + 1)
        if lname == "include":
            return self.parse_file(value, True, config_file, lineno, depth + 1)
        self.items.append(ConfigItem(name, value, config_file, lineno))
        return True


def parse_config_file(
    path: str | PathLike[str], *, strict: bool = True, notices: list[str] | None = None
) -> list[ConfigItem]:
    """Parse one configuration file (and everything it includes).

    strict=False behaves like include_if_exists for the top file: a missing file yields no
    items and a "skipping missing configuration file" notice (PostgreSQL logs it at LOG).
    Notices are appended to `notices` when given. Raises ConfigFileError if anything failed.
    """
    parser = _Parser(notices)
    parser.parse_file(os.fspath(path), strict, None, 0, 0)
    if parser.problems:
        first = parser.problems[0]
        raise ConfigFileError(
            first.message, first.filename, first.lineno, sqlstate=first.sqlstate, problems=parser.problems
        )
    return parser.items


def parse_config_text(text: str, filename: str) -> list[ConfigItem]:
    """Parse configuration text as if read from `filename` (includes resolve against it)."""
    parser = _Parser(None)
    parser.parse_text(text.encode("utf-8").decode("latin-1"), _absolute(filename, None), 0)
    if parser.problems:
        first = parser.problems[0]
        raise ConfigFileError(
            first.message, first.filename, first.lineno, sqlstate=first.sqlstate, problems=parser.problems
        )
    return parser.items
