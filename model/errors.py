"""Error types shared by every layer (no dependencies, safe to import anywhere)."""


class AnchorError(Exception):
    """An error caused by input or configuration.

    The message must say what is wrong and where (which field, file, frame or config
    key), so the CLI can print it without a traceback and the server can send it to
    the client that caused it.
    """


class WeightsError(AnchorError):
    """Weights are missing, or do not match the architecture they are loaded into."""
