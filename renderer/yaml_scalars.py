"""Safe YAML scalars for templates.

Every free-text value reaches a template through ``quote``: a YAML double-quoted scalar in which
every character that could end the scalar, start a new line or be read differently by another
YAML parser is escaped. Whatever a value contains, it stays one scalar: it cannot add keys,
documents, anchors or tags.
"""

from __future__ import annotations

_NAMED_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
}

# YAML 1.1 parsers treat NEL and the Unicode line/paragraph separators as line breaks, and a BOM
# or a lone surrogate is not printable; escape them so every parser reads the same value.
_ALWAYS_ESCAPED = {"\x85", "\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff"}


def _escape_char(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    if 0x20 <= code < 0x7F:
        return char
    needs_escape = code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or char in _ALWAYS_ESCAPED
    if not needs_escape:
        return char
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def quote(value: object) -> str:
    """Render a string as a YAML double-quoted scalar. Non-strings are a template bug."""
    if not isinstance(value, str):
        raise TypeError(f"quote() takes a str, got {type(value).__name__}; convert it in the renderer")
    return '"' + "".join(_escape_char(char) for char in value) + '"'


def integer(value: object) -> str:
    """Render an int (never a bool or a string that looks like one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"integer() takes an int, got {type(value).__name__}")
    return str(value)


def boolean(value: object) -> str:
    if not isinstance(value, bool):
        raise TypeError(f"boolean() takes a bool, got {type(value).__name__}")
    return "true" if value else "false"
