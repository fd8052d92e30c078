"""Errors lrphase reports to users, and the exit codes of every command, defined once."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status means; stable, so CI can rely on it."""

    OK = 0  # success; for ``check``: the rate passes
    FAILED = 1  # ``check``: the rate is not in an accepted phase
    BAD_INPUT = 2  # bad input or usage: one line on stderr says what and how to fix it
    NOT_CONVERGED = 3  # Lanczos did not converge: λ₀, and any verdict, is unreliable
    INTERNAL = 4  # an unexpected internal error (``--debug`` shows the traceback)
    NOT_APPLICABLE = 5  # ``check``: the optimizer is adaptive, nothing was checked
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class LrphaseError(Exception):
    """Base class: a problem lrphase explains in one line instead of a traceback (exit code 4 unless a subclass says)."""

    exit_code: ExitCode = ExitCode.INTERNAL


class InputError(LrphaseError):
    """The user's model file, model, data or options cannot be used as given (exit code 2)."""

    exit_code = ExitCode.BAD_INPUT
