"""What can go wrong in a review, once the transport has handed over a body.

Two answers exist. A body that is not an AdmissionReview (not JSON, no uid, the wrong
apiVersion) has no uid to echo, so it cannot be answered in band: it is an HTTP 400
(:class:`BadRequest`), like kopf's admission errors a one-line JSON error, never a
traceback and never a 500. An AdmissionReview whose object cannot be reviewed
(:class:`UnreviewableObject`) is answered in band by the handler, ``allowed: false``
with ``status.code`` 400, so that no failurePolicy can admit it unreviewed. Transport
errors (413, 415, 405) are the server's (webhook.server.http), not these.
"""

from __future__ import annotations


class AdmissionError(Exception):
    """A review that cannot be answered in band; ``status`` is the HTTP code to send."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AdmissionError):
    """The body is not an AdmissionReview v1 nfsguard can read."""

    status = 400


class UnreviewableObject(BadRequest):
    """A well-formed review of an object no apiserver sends (its kind does not match
    ``request.kind``, or the engine cannot read it: ``InvalidObject``).

    The served handler answers it in band (``status`` is then ``status.code`` of the
    AdmissionResponse, not the HTTP status); offline callers (``nfsguard review``,
    ``policy explain``, ``policy test``) catch it as the :class:`BadRequest` it is.
    """


class Unavailable(AdmissionError):
    """The review was understood but cannot be answered honestly right now
    (e.g. its decision could not be recorded): the apiserver applies failurePolicy."""

    status = 503
