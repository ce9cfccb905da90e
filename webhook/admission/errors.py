"""The small exception hierarchy of a review; each maps to one HTTP status.

Like kopf's admission errors: raising one anywhere in a review turns into a
one-line JSON error with that status, never a traceback and never a 500.
Transport errors (405, 413, 415) are the server's (webhook.server.http).
"""

from __future__ import annotations


class AdmissionError(Exception):
    """A review that cannot be answered; ``status`` is the HTTP code to send."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AdmissionError):
    status = 400


class Unavailable(AdmissionError):
    """The review was understood but cannot be answered honestly right now
    (e.g. its decision could not be recorded): the apiserver applies failurePolicy."""

    status = 503
