"""The ``lrphase`` command line. ``app`` is loaded on first use, so importing the package stays light."""

from __future__ import annotations

from typing import Any


def main() -> None:
    """Console-script entry point."""
    from .app import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from .app import app

        return app
    raise AttributeError(f"module 'lrphase.cli' has no attribute {name!r}")
