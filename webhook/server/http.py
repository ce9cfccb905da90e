"""The HTTP transport of ``POST /mutate``: method, content type, body size, reading and
draining, each checked once, before a review is parsed; and the shape of every answer.

What is refused here (405, 413, 415) is the transport's: the body never reaches
webhook.admission, which only ever sees a body within :data:`MAX_BODY`. Every error is
answered the same way, by the transport and by admission alike: a status line, one line
of JSON with ``error`` and ``code``, ``Content-Type`` and ``Content-Length``.
"""

from __future__ import annotations

import functools
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

import orjson
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger("nfsguard")

#: Twice the apiserver's 3 MiB object limit: a review carries object and oldObject.
MAX_BODY = 2 * 3 * 1024 * 1024 + 64 * 1024

#: A refused body up to this size is read and dropped before answering, so that a client
#: still sending it reads the error (and may reuse the connection) instead of a reset;
#: anything larger is answered at once and the connection closed.
DRAIN_LIMIT = 4 * MAX_BODY

#: The media types a review may be sent as (RFC 9110 section 8.3.1: type and subtype
#: compared case-insensitively, parameters apart); kube-apiserver sends the first.
JSON_MEDIA_TYPES = frozenset({"application/json"})
#: The charsets a JSON body may declare (RFC 8259 section 8.1: JSON is UTF-8).
JSON_CHARSETS = frozenset({"utf-8", "utf8"})

#: The content type of every /mutate answer, errors included.
JSON_CONTENT_TYPE = ("Content-Type", "application/json")


class TransportError(Exception):
    """A request refused before its body is read as a review; ``status`` is the HTTP code."""

    status: int = 400
    #: Headers the status calls for (RFC 9110: 405 names the allowed methods).
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MethodNotAllowed(TransportError):
    status = 405
    headers = (("Allow", "POST"),)


class PayloadTooLarge(TransportError):
    status = 413


class UnsupportedMediaType(TransportError):
    status = 415


@functools.cache
def status_line(code: int) -> str:
    """``413 Request Entity Too Large``: any status an error may carry."""
    return f"{code} {HTTPStatus(code).phrase}"


def error_body(status: int, message: str) -> bytes:
    """The JSON of every error nfsguard answers: one line, the reason and the code."""
    return orjson.dumps({"error": message.replace("\n", " "), "code": status})


def json_headers(body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    """The headers of a JSON answer of ``body``."""
    return [JSON_CONTENT_TYPE, ("Content-Length", str(len(body))), *extra]


def read_review_body(environ: WSGIEnvironment) -> bytes:
    """The body of a ``POST /mutate``, at most MAX_BODY bytes. Raises MethodNotAllowed,
    UnsupportedMediaType (a media type other than application/json, or a charset other
    than UTF-8; none given is taken as JSON, as the apiserver always sends it),
    PayloadTooLarge (by Content-Length, or by reading a chunked body one byte past the
    limit), TransportError (400: a malformed chunked body) or werkzeug's
    ClientDisconnected (a body cut short; the app answers 400)."""
    method = environ.get("REQUEST_METHOD")
    if method != "POST":
        raise MethodNotAllowed(f"{method} {environ.get('PATH_INFO')}: use POST")
    header = environ.get("CONTENT_TYPE", "")
    ctype, params = parse_options_header(header)
    ctype = ctype.lower()
    if header.strip() and ctype not in JSON_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {header.strip()[:100]!r}"
        )
    charset = params.get("charset", "utf-8").lower()
    if charset not in JSON_CHARSETS:
        raise UnsupportedMediaType(f"a review is JSON in UTF-8, not charset={charset[:40]}")
    length = get_content_length(environ)
    if length is not None and length > MAX_BODY:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds {MAX_BODY}")
    if length is not None and "wsgi.input_terminated" in environ:
        # The server ends the stream at Content-Length (gunicorn does; the apiserver
        # always sends one): read it as it is, which werkzeug's docs call safe; its
        # LimitedStream would add 2-3 us per review and nothing else.
        try:
            body: bytes = environ["wsgi.input"].read(length)
            return body
        except (OSError, ValueError):  # what LimitedStream turns a broken read into
            raise ClientDisconnected() from None
    # A stream to be limited here: never past Content-Length; chunked, one byte over
    # MAX_BODY, so that an oversized body reads as too long (413) rather than silently
    # cut at the limit (a misleading 400).
    try:
        stream = get_input_stream(environ, max_content_length=MAX_BODY + 1)
        body = stream.read(MAX_BODY + 1 if length is None else length)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"request body exceeds {MAX_BODY} bytes") from None
    except ParseException as exc:  # gunicorn's chunked reader: a malformed body
        raise TransportError(f"malformed request body: {exc}") from None
    except NoMoreData:  # a body cut short, as werkzeug says it
        raise ClientDisconnected() from None
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds {MAX_BODY}")
    return body


def drain_body(environ: WSGIEnvironment) -> None:
    """Read what is left of the request body, at most DRAIN_LIMIT bytes. Best effort:
    a client that breaks off or garbles its body still gets the error it caused."""
    length = get_content_length(environ)  # None when absent or not a number
    if length is not None and length > DRAIN_LIMIT:
        return
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    left = DRAIN_LIMIT
    try:
        while left > 0:
            chunk = stream.read(min(256 * 1024, left))
            if not chunk:
                return
            left -= len(chunk)
    except Exception:  # gunicorn's body parse errors and socket errors alike
        log.debug("request body not drained", exc_info=True)
