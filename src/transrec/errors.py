"""One exception type for every problem a user can fix; the CLI turns it into one line."""


class TransrecError(Exception):
    """A user-facing error: bad input, bad params, a missing file. Printed as one line, exit 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a one-line error
    quotes of a library's multi-line traceback text."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
