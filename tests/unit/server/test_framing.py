"""Where a request ends (webhook/server/framing.py): the serving worker hands a thread
only what these say is whole, so every byte count here is one a stalled client could
otherwise hold a thread with."""

from __future__ import annotations

import pytest

from webhook.server.framing import MAX_HEADER_BYTES, Framed, HeadersTooLarge, frame_request

HEAD = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
LIMIT = 1000


def frame(data: bytes) -> Framed | None:
    return frame_request(data, max_body=LIMIT)


def test_a_request_is_whole_only_with_all_its_content_length() -> None:
    request = HEAD + b"Content-Length: 2\r\n\r\n{}"
    for cut in range(len(request)):
        assert frame(request[:cut]) is None
    assert frame(request) == Framed(len(request), complete=True)
    # the next request on the connection is not part of this one
    assert frame(request + b"GET /healthz HTTP/1.1\r\n") == Framed(len(request), True)


def test_no_body_without_length_or_chunking() -> None:
    request = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert frame(request + b"GET") == Framed(len(request), True)


def test_a_chunked_body_is_whole_at_its_last_chunk_and_trailers() -> None:
    head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    body = b"2\r\n{}\r\n1;ext=1\r\n \r\n0\r\nX-Trailer: 1\r\n\r\n"
    for cut in range(len(body)):
        assert frame(head + body[:cut]) is None, cut
    assert frame(head + body) == Framed(len(head + body), True)


@pytest.mark.parametrize(
    "body", [b"zz\r\n", b"2\r\n{}XX", b"-1\r\n", b"1" * 2000], ids=["hex", "crlf", "sign", "line"]
)
def test_a_malformed_chunked_body_is_handed_on_at_once(body: bytes) -> None:
    """Handed on incomplete: gunicorn's reader says why (400), the connection closes."""
    data = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body
    assert frame(data) == Framed(len(data), complete=False)


def test_a_body_over_the_limit_is_handed_on_before_it_is_read() -> None:
    head = HEAD + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
    assert frame(head) == Framed(len(head), complete=False)
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % (LIMIT + 1)
    assert frame(chunked + b"x" * LIMIT) is None
    assert frame(chunked + b"x" * (LIMIT + 1)) == Framed(len(chunked) + LIMIT + 1, False)


def test_tiny_chunks_cannot_buffer_without_bound() -> None:
    """Chunk extensions around 1-byte chunks: 100 bytes of data in 90 KB of framing."""
    data = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1;" + b"e" * 900 + b"\r\nx\r\n"
    data = data + (b"1;" + b"e" * 900 + b"\r\nx\r\n") * 99
    assert frame(data) == Framed(len(data), complete=False)


@pytest.mark.parametrize(
    "lengths", [b"Content-Length: x1\r\n", b"Content-Length: 1\r\nContent-Length: 2\r\n"]
)
def test_a_length_gunicorn_refuses_is_handed_on_at_once(lengths: bytes) -> None:
    data = HEAD + lengths + b"\r\n"
    assert frame(data) == Framed(len(data), complete=False)


def test_headers_have_a_bound() -> None:
    assert frame(HEAD + b"X: " + b"y" * (MAX_HEADER_BYTES - 200)) is None
    with pytest.raises(HeadersTooLarge):
        frame(HEAD + b"X: " + b"y" * MAX_HEADER_BYTES)
