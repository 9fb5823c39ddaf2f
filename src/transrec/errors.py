"""One exception type for every problem a user can fix; the CLI turns it into one line."""


class TransrecError(Exception):
    """A user-facing error: bad input, bad params, a missing file. Printed as one line, exit 2."""
