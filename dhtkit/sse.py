"""Server-sent events (the ``text/event-stream`` format): writing and reading.

Pure functions and a parser, no I/O: the HTTP API writes its streams with
:func:`event` and :func:`comment` (:mod:`dhtkit.web.listen`), and the
``dhtkit listen`` command reads them with :class:`EventParser`. Only what
the WHATWG format needs for dhtkit's streams: ``event``, ``data`` and
``id`` fields, comments, and any of the three line endings.
"""

from __future__ import annotations

import attrs

CONTENT_TYPE = "text/event-stream; charset=utf-8"

#: The longest line a parser keeps; a longer one ends the stream as malformed.
MAX_LINE = 64 * 1024


class StreamError(ValueError):
    """What came is not an event stream a dhtkit node sends."""


@attrs.frozen
class Event:
    """One event: its type (``message`` by default), data and last id."""

    type: str
    data: str
    id: str = ""


def _check(name: str, text: str) -> None:
    if "\n" in text or "\r" in text:
        raise ValueError("an event's {} cannot hold a line break".format(name))


def event(type: str, data: str, id: str = "") -> bytes:
    """One event as the bytes of a stream: each line of ``data`` its own field."""
    _check("type", type)
    _check("id", id)
    lines = ["event: " + type] if type != "message" else []
    if id:
        lines.append("id: " + id)
    lines += ["data: " + line for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str = "") -> bytes:
    """A comment line and a blank one: ignored by clients, keeps the connection busy."""
    _check("comment", text)
    return (": " + text + "\n\n").encode("utf-8")


class EventParser:
    """Turns the bytes of a stream, as they come, into :class:`Event`\\ s."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = b""
        self._type = ""
        self._data: list[str] = []
        self._id = ""

    def feed(self, data: bytes) -> list[Event]:
        """The events that ``data`` completes.

        :raises StreamError: a line longer than ``max_line`` or not UTF-8.
        """
        self._buffer += data
        events: list[Event] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                if len(self._buffer) > self.max_line:
                    raise StreamError(
                        "a line of the stream is longer than {} bytes".format(self.max_line)
                    )
                return events
            start, end = cut
            raw, self._buffer = self._buffer[:start], self._buffer[end:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise StreamError("the stream is not UTF-8") from None
            found = self._line(line)
            if found is not None:
                events.append(found)

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data:
                self._type = ""
                return None
            found = Event(self._type or "message", "\n".join(self._data), self._id)
            self._type, self._data = "", []
            return found
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    # A line ends with CRLF, LF or CR; a CR at the very end may be half a CRLF.
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, lf + 1)
    if cr + 1 == len(buffer):
        return None
    return (cr, cr + 2) if buffer[cr + 1 : cr + 2] == b"\n" else (cr, cr + 1)
