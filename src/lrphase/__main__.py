"""``python -m lrphase`` (and ``torchrun -m lrphase``) runs the command line."""

from .cli import main

main()
