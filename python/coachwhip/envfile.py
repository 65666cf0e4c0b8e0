"""--env-file: KEY=VALUE lines read as python-dotenv reads them (what uvicorn's --env-file uses).

Supported: `KEY=VALUE` and `export KEY=VALUE`; blank lines and `#` comments; unquoted values
(trimmed, a ` #` starts a comment); 'single-quoted' values (literal); "double-quoted" values
(escapes \\n \\t \\r \\\\ \\" and the like); quoted values spanning lines; `${VAR}` and
`${VAR:-default}` in unquoted and double-quoted values (from the environment first, then from
the lines above). A line that is none of these is skipped with a warning, as python-dotenv does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_BLANK = re.compile(r"[ \t]*(?:#[^\n]*)?(?:\n|\Z)")
_KEY = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*=[ \t]*")
_SINGLE = re.compile(r"'((?:\\'|[^'])*)'")
_DOUBLE = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_UNQUOTED = re.compile(r"[^\n]*")
_END = re.compile(r"[ \t]*(?:#[^\n]*)?(?:\n|\Z)")
_LINE_REST = re.compile(r"[^\n]*(?:\n|\Z)")
_VARIABLE = re.compile(r"\$\{([^}:]+)(?::-([^}]*))?\}")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def parse(text: str, environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(variables, warnings) of a dotenv file's text. `environ` is used for ${VAR}."""
    text = text.replace("\r\n", "\n")
    found: dict[str, str] = {}
    warnings: list[str] = []
    pos = 0
    while pos < len(text):
        blank = _BLANK.match(text, pos)
        if blank and blank.end() > pos:
            pos = blank.end()
            continue
        line = text.count("\n", 0, pos) + 1
        key = _KEY.match(text, pos)
        value: str | None = None
        if key:
            pos = key.end()
            value, pos = _value(text, pos, environ, found)
        if key is None or value is None:
            warnings.append(f"line {line} is not KEY=VALUE; skipped")
            rest = _LINE_REST.match(text, pos)
            pos = rest.end() if rest else len(text)
            continue
        found[key.group(1)] = value
    return found, warnings


def _value(
    text: str, pos: int, environ: Mapping[str, str], found: Mapping[str, str]
) -> tuple[str | None, int]:
    """The value at `pos` and the position after its line, or (None, pos) if it is malformed."""
    quote = text[pos : pos + 1]
    if quote in ("'", '"'):
        match = (_SINGLE if quote == "'" else _DOUBLE).match(text, pos)
        end = _END.match(text, match.end()) if match else None
        if match is None or end is None:
            return None, pos
        raw = match.group(1)
        if quote == "'":
            return raw.replace("\\'", "'"), end.end()
        unescaped = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)
        return _expand(unescaped, environ, found), end.end()
    match = _UNQUOTED.match(text, pos)
    assert match is not None  # matches the empty string at least
    raw = re.sub(r"(?:^|[ \t]+)#.*", "", match.group(0)).rstrip()
    end = match.end() + 1 if match.end() < len(text) else match.end()
    return _expand(raw, environ, found), end


def _expand(value: str, environ: Mapping[str, str], found: Mapping[str, str]) -> str:
    def lookup(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        got = environ.get(name) or found.get(name)
        return got if got else (default or "")

    return _VARIABLE.sub(lookup, value)
