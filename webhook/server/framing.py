"""Where one HTTP/1.1 request ends in the bytes a connection has sent so far.

The serving worker (webhook/server/worker.py) reads every connection without a
thread, in its event loop, and hands a request to a thread only once it is whole:
a client that stalls in its headers or its body then holds a buffer and a file
descriptor, never a thread. This module answers the one question that needs: do
these bytes hold a complete request yet, and how long is it (RFC 9112 section 6:
Transfer-Encoding chunked, else Content-Length, else no body). Everything else
about the request (its line, header syntax, conflicting lengths) is left to
gunicorn's parser, which reads the bytes framed here and answers its own 400s.

Pure: bytes in, an answer out.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Request line and headers together; beyond this a request is refused with 431
#: (gunicorn's own limits are 4094 bytes a line and 100 fields of 8190 bytes; the
#: apiserver sends a few hundred bytes).
MAX_HEADER_BYTES = 64 * 1024

#: A chunk-size line (hex size and extensions) longer than this is malformed.
_MAX_CHUNK_LINE = 1024


class HeadersTooLarge(Exception):
    """No end of headers within MAX_HEADER_BYTES."""


@dataclass(frozen=True)
class Framed:
    """A request found at the start of the buffer."""

    #: Bytes of the buffer that belong to this request (handed to the parser).
    length: int
    #: False when the request is handed on before its body is whole (a body larger
    #: than the limit, a malformed chunked body, a length gunicorn will refuse): it is
    #: answered (413, 400) and the connection closed, as the rest of the body is unread.
    complete: bool


def frame_request(buffer: bytes | bytearray, *, max_body: int) -> Framed | None:
    """The request at the start of ``buffer``, or None while more bytes are needed.

    Raises HeadersTooLarge when the headers do not end within MAX_HEADER_BYTES.
    A body above ``max_body`` is handed on (``complete`` False) as soon as that is
    known from Content-Length, or once more than ``max_body`` bytes of chunk data
    are buffered, so that the reader of the body sees it is too large (413).
    """
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
    if end < 0:
        if len(buffer) > MAX_HEADER_BYTES:
            raise HeadersTooLarge(f"request headers exceed {MAX_HEADER_BYTES} bytes")
        return None
    head = end + 4
    chunked = False
    encoded = False
    lengths: set[bytes] = set()
    for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        field = name.strip().lower()
        if field == b"transfer-encoding":
            encoded = True
            chunked = chunked or b"chunked" in value.lower()
        elif field == b"content-length":
            lengths.add(value.strip())
    if encoded:
        if not chunked:  # a coding gunicorn does not take: it answers 501 at once
            return Framed(head, complete=False)
        return _frame_chunked(buffer, head, max_body)
    if not lengths:
        return Framed(head, complete=True)
    (text,) = lengths if len(lengths) == 1 else (b"",)
    if not text.isdigit() or len(text) > 18:  # gunicorn answers 400 (invalid header)
        return Framed(head, complete=False)
    size = int(text)
    if size > max_body:
        return Framed(head, complete=False)
    if len(buffer) < head + size:
        return None
    return Framed(head + size, complete=True)


def _frame_chunked(buffer: bytes | bytearray, start: int, max_body: int) -> Framed | None:
    """A chunked body (RFC 9112 section 7.1) from ``start``: chunks, the last chunk
    (size 0), trailer fields, the empty line."""
    position = start
    data = 0
    overhead_limit = 2 * max_body + 64 * 1024  # tiny chunks: framing beyond any body
    while True:
        if len(buffer) - start > overhead_limit:
            return Framed(len(buffer), complete=False)
        eol = buffer.find(b"\r\n", position, position + _MAX_CHUNK_LINE)
        if eol < 0:
            if len(buffer) - position > _MAX_CHUNK_LINE:
                return Framed(len(buffer), complete=False)
            return None
        size_text = bytes(buffer[position:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16) if size_text and len(size_text) <= 16 else -1
        except ValueError:
            size = -1
        if size < 0 or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            return Framed(len(buffer), complete=False)  # the parser says why: 400
        if size == 0:
            return _frame_trailers(buffer, eol + 2)
        begin = eol + 2
        available = min(size, max(0, len(buffer) - begin))
        if data + available > max_body:
            return Framed(len(buffer), complete=False)  # the reader sees > max_body: 413
        if len(buffer) < begin + size + 2:
            return None
        if buffer[begin + size : begin + size + 2] != b"\r\n":
            return Framed(len(buffer), complete=False)  # a chunk not ended by CRLF: 400
        data += size
        position = begin + size + 2


def _frame_trailers(buffer: bytes | bytearray, position: int) -> Framed | None:
    while True:
        eol = buffer.find(b"\r\n", position, position + MAX_HEADER_BYTES)
        if eol < 0:
            if len(buffer) - position > MAX_HEADER_BYTES:
                return Framed(len(buffer), complete=False)
            return None
        if eol == position:
            return Framed(eol + 2, complete=True)
        position = eol + 2
