"""Running the real programs actions need (postmap, doveadm, postsuper, a configured command).

Always an argv list, never a shell; a timeout on every call; failures wrapped in
:class:`~postwatch.errors.ActionError` naming the program, its exit status and the tail of
what it wrote to stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from postwatch.errors import ActionError

DEFAULT_TIMEOUT = 30.0
_TAIL = 400


class ProgramResult:
    """What a finished program returned."""

    __slots__ = ("argv", "returncode", "stderr", "stdout")

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def describe(self) -> str:
        """One line: the program, its exit status, and the end of its stderr."""
        tail = " ".join(self.stderr.split())[-_TAIL:]
        return f"{self.argv[0]} exited with status {self.returncode}" + (
            f": {tail}" if tail else ""
        )


def run_program(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    ok: Sequence[int] = (0,),
) -> ProgramResult:
    """Run ``argv`` and return its result; raise :class:`ActionError` if it fails.

    ``ok`` lists the exit statuses that count as success (``postmap -q`` returns 1 for
    "not found", which is an answer, not a failure).
    """
    if not argv or not all(isinstance(part, str) for part in argv):
        raise ActionError(f"not a command: {argv!r}")
    try:
        completed = subprocess.run(  # argv list, no shell
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            errors="replace",
        )
    except FileNotFoundError as exc:
        raise ActionError(f"{argv[0]}: program not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ActionError(f"{argv[0]}: no answer after {timeout:g} seconds") from exc
    except OSError as exc:
        raise ActionError(f"{argv[0]}: cannot run: {exc}") from exc
    result = ProgramResult(argv, completed.returncode, completed.stdout, completed.stderr)
    if completed.returncode not in ok:
        raise ActionError(result.describe())
    return result
