"""The transport of ``POST /mutate`` (webhook/server/http.py): method, content type, size
and draining, on the three WSGI environs a body comes in: as gunicorn builds them (it
ends the stream itself, ``wsgi.input_terminated``, with a Content-Length or chunked
without one) and as a server that leaves the limit to the application (a Content-Length
only). The served suite sends the same over TLS to gunicorn."""

from __future__ import annotations

import io
from typing import Any

import pytest
from werkzeug.exceptions import ClientDisconnected

from webhook.server.http import (
    DRAIN_LIMIT,
    MAX_BODY,
    MethodNotAllowed,
    PayloadTooLarge,
    TransportError,
    UnsupportedMediaType,
    drain_body,
    error_body,
    json_headers,
    read_review_body,
)

#: How the server hands a body over: (it ends the stream itself, it sends Content-Length).
SHAPES = {"gunicorn": (True, True), "chunked": (True, False), "length-only": (False, True)}


def environ(
    body: bytes,
    *,
    method: str = "POST",
    ctype: str = "application/json",
    shape: str = "gunicorn",
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/mutate",
        "CONTENT_TYPE": ctype,
        "wsgi.input": io.BytesIO(body),
    }
    terminated, with_length = SHAPES[shape]
    if terminated:
        env["wsgi.input_terminated"] = True
    if with_length:
        env["CONTENT_LENGTH"] = str(len(body))
    return env


@pytest.mark.parametrize("shape", SHAPES)
def test_a_body_up_to_the_limit_is_read_whole(shape: str) -> None:
    assert MAX_BODY == 6 * 1024 * 1024 + 64 * 1024
    body = b"x" * MAX_BODY
    assert read_review_body(environ(body, shape=shape)) == body
    assert read_review_body(environ(b"{}", ctype="", shape=shape)) == b"{}"
    assert read_review_body(environ(b"", shape=shape)) == b""


@pytest.mark.parametrize("shape", SHAPES)
def test_a_body_over_the_limit_is_413(shape: str) -> None:
    with pytest.raises(PayloadTooLarge) as info:
        read_review_body(environ(b" " * (MAX_BODY + 1), shape=shape))
    assert info.value.status == 413
    assert isinstance(info.value, TransportError)
    assert f"exceeds {MAX_BODY}" in info.value.message


def test_json_content_types_are_accepted_and_others_are_415() -> None:
    """The media type is parsed (RFC 9110 8.3.1), not searched for "json"."""
    for ctype in (
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; charset=UTF-8",
        "application/json;charset=utf8",
    ):
        assert read_review_body(environ(b"{}", ctype=ctype)) == b"{}"
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/yaml",
        "text/json",
        "application/jsonx",
        "application/json-patch+json",
        "multipart/form-data; boundary=json",
        "application/json; charset=latin-1",
    ):
        with pytest.raises(UnsupportedMediaType) as info:
            read_review_body(environ(b"{}", ctype=ctype))
        assert info.value.status == 415


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_post_is_read(method: str) -> None:
    with pytest.raises(MethodNotAllowed) as info:
        read_review_body(environ(b"{}", method=method))
    assert info.value.status == 405 and info.value.headers == (("Allow", "POST"),)
    assert info.value.message == f"{method} /mutate: use POST"


def test_error_answers_are_one_json_line() -> None:
    body = error_body(413, "too\nlarge")
    assert body == b'{"error":"too large","code":413}'
    assert json_headers(body, (("Allow", "POST"),)) == [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Allow", "POST"),
    ]


def test_draining_reads_what_is_left_up_to_the_limit() -> None:
    left = environ(b"y" * 1000)
    drain_body(left)
    assert left["wsgi.input"].read() == b""
    huge = environ(b"z" * 10)
    huge["CONTENT_LENGTH"] = str(DRAIN_LIMIT + 1)  # answered at once, connection closed
    drain_body(huge)
    assert huge["wsgi.input"].read() == b"z" * 10


class Broken:
    """A socket the client reset: every read fails (gunicorn's body has read, no readinto)."""

    def read(self, size: int = -1) -> bytes:
        raise OSError("connection reset")


@pytest.mark.parametrize("shape", SHAPES)
def test_a_broken_read_is_a_disconnected_client_as_werkzeug_says(shape: str) -> None:
    env = environ(b"{}", shape=shape)
    env["wsgi.input"] = Broken()
    with pytest.raises(ClientDisconnected):
        read_review_body(env)


def test_a_body_is_never_read_past_its_content_length() -> None:
    for shape in ("gunicorn", "length-only"):
        env = environ(b"{}", shape=shape)
        env["wsgi.input"] = io.BytesIO(b"{}GET /next HTTP/1.1")
        assert read_review_body(env) == b"{}"


def test_draining_a_broken_body_is_quiet() -> None:
    env = environ(b"")
    env["wsgi.input"] = Broken()
    drain_body(env)  # no exception: the client still gets the error it caused


@pytest.mark.parametrize(
    "chunked",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"-2\r\n{}\r\n0\r\n\r\n"],
    ids=["bad size", "no CRLF after the chunk", "negative size"],
)
def test_a_malformed_chunked_body_is_400_not_500(chunked: bytes) -> None:
    """gunicorn's own chunked reader raises its parse errors from ``wsgi.input``; they
    are the client's fault: a 400 with a one-line message."""
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser

    request = (
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked
    )
    parsed = next(RequestParser(Config(), iter([request]), ("127.0.0.1", 1)))
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/mutate",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": parsed.body,
        "wsgi.input_terminated": True,
    }
    with pytest.raises(TransportError) as info:
        read_review_body(env)
    assert info.value.status == 400
    assert info.value.message.startswith("malformed request body")
    assert "\n" not in info.value.message
