"""A file holding one JSON array (`[{...}, {...}]`), read an element at a time: the standard
library's decoder is given each element's text as it streams in, so memory holds one element
and a chunk, whatever the file's size. Each element comes with the line it starts on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any

CHUNK = 1 << 16
LARGEST = 64 << 20  # an element this long that still does not parse is not JSON
_DECODER = json.JSONDecoder(parse_float=Decimal)
_SPACE = " \t\r\n"


class BadJson(ValueError):
    """The file is not one JSON array; `line` says where it stops being one."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


def documents(f: IO[str]) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of the array the text holds.

    Raises:
        BadJson: the text is not one JSON array (with the line where it goes wrong).
    """
    buffer, pos, line, ended = "", 0, 1, False

    def more() -> bool:
        nonlocal buffer, pos, ended
        if ended:
            return False
        chunk = f.read(CHUNK)
        if not chunk:
            ended = True
            return False
        buffer = buffer[pos:] + chunk
        pos = 0
        return True

    def skip_space() -> str | None:
        """The next character that is not white space (counting lines), None at the end."""
        nonlocal pos, line
        while True:
            while pos < len(buffer) and buffer[pos] in _SPACE:
                line += buffer[pos] == "\n"
                pos += 1
            if pos < len(buffer):
                return buffer[pos]
            if not more():
                return None

    if skip_space() != "[":
        raise BadJson("not a JSON array (a file of format json holds one: [{...}, {...}])", line)
    pos += 1
    first = True
    while True:
        ch = skip_space()
        if ch is None:
            raise BadJson("the array is not closed (a ']' is missing: is the file cut short?)", line)
        if ch == "]":
            pos += 1
            if skip_space() is not None:
                raise BadJson("text after the array's closing ']'", line)
            return
        if not first:
            if ch != ",":
                raise BadJson(f"expected ',' or ']' between elements, found {ch!r}", line)
            pos += 1
            if skip_space() is None:
                raise BadJson("the array is not closed (a ']' is missing: is the file cut short?)", line)
        first = False
        while True:
            try:
                document, end = _DECODER.raw_decode(buffer, pos)
            except json.JSONDecodeError as exc:
                if len(buffer) - pos < LARGEST and more():  # the element may go on in the next chunk
                    continue
                at = line + buffer.count("\n", pos, exc.pos)
                raise BadJson(f"not JSON: {exc.msg}", at) from None
            if end == len(buffer) and buffer[pos] not in '{["' and more():  # a number may go on
                continue
            break
        yield line, document
        line += buffer.count("\n", pos, end)
        pos = end
