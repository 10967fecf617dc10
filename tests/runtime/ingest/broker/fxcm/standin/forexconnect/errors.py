"""Stand-in for `forexconnect.errors`: the SDK's four exceptions, with their text in `msg`."""

from __future__ import annotations


class _SdkError(Exception):
    msg = ""

    def __init__(self, error_text: str) -> None:
        Exception.__init__(self)
        self.msg = error_text

    def __str__(self) -> str:
        return self.msg


class RequestFailedError(_SdkError):
    pass


class TableManagerError(_SdkError):
    pass


class LoginFailedError(_SdkError):
    pass


class TimeFrameError(_SdkError):
    pass
