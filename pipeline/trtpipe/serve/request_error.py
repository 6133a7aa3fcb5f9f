"""The frontend's one client-error type: an OpenAI error envelope with a stable `type` (also the metrics label)."""

from __future__ import annotations


class RequestError(Exception):
    """An error with an OpenAI envelope: `type` is stable and used both in the envelope and as a metrics label."""

    def __init__(self, message: str, *, param: str | None = None, type: str = "invalid_request_error",
                 code: str | None = None, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message, self.param, self.type, self.code, self.status = message, param, type, code, status
        self.headers = headers

    def envelope(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
