"""Errors lrphase reports to users, each with the exit code the CLI returns for it."""

from __future__ import annotations


class LrphaseError(Exception):
    """Base class: a problem lrphase explains in one line instead of a traceback (exit code 4 unless a subclass says)."""

    exit_code: int = 4


class InputError(LrphaseError):
    """The user's model file, model, data or options cannot be used as given (exit code 2)."""

    exit_code = 2
