"""The one exception type users see: a sentence naming the file, the field and what was expected."""


class DeepDrawError(Exception):
    """An error caused by input (a file, a config key, an argument), reported without a traceback."""
