"""The project's exceptions and the exit code each one maps to.

The CLI turns any `MagvitError` into one readable line on stderr and exits with
`error.exit_code`; anything else is a bug and exits 1 (traceback with --debug).
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2        # bad command line (also Click/Typer's own code)
EXIT_INPUT = 3        # input video / mask / token file missing, corrupt or unsupported
EXIT_MODEL = 4        # model missing, corrupt, mismatched, unknown id, not cached offline
EXIT_UNSUPPORTED = 5  # task or device not available for this model / machine
EXIT_OUTPUT = 6       # output cannot be written (missing dir, read-only, disk full, == input)
EXIT_MEMORY = 7       # out of memory
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C); SIGTERM exits 143


class MagvitError(Exception):
    """Base class: a failure the user can understand and act on."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(MagvitError):
    exit_code = EXIT_USAGE


class InputError(MagvitError):
    exit_code = EXIT_INPUT


class ModelError(MagvitError):
    exit_code = EXIT_MODEL


class UnsupportedError(MagvitError):
    exit_code = EXIT_UNSUPPORTED


class OutputError(MagvitError):
    exit_code = EXIT_OUTPUT


class OutOfMemoryError(MagvitError):
    exit_code = EXIT_MEMORY


class Interrupted(MagvitError):
    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted", hint: str | None = None, exit_code: int = EXIT_INTERRUPTED):
        super().__init__(message, hint)
        self.exit_code = exit_code


# One table for the README and the tests.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: rerun with --debug and report it)",
    EXIT_USAGE: "bad command line: unknown option or invalid value",
    EXIT_INPUT: "input file missing, unreadable, corrupt or unsupported",
    EXIT_MODEL: "model missing, corrupt, mismatched, unknown, or not cached while offline",
    EXIT_UNSUPPORTED: "task or device not supported by this model or machine",
    EXIT_OUTPUT: "output cannot be written (missing or read-only folder, disk full, same as input)",
    EXIT_MEMORY: "out of memory",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); 143 for SIGTERM",
}
