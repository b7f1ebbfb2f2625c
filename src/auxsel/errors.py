"""One exception type for input the user must fix.

Stage entry points catch it and print its message as one line, so the user sees what to fix
(task, key, column, file) instead of a traceback.
"""


class AuxselError(Exception):
    """Bad params, bad data or a failed check that the user must fix."""
