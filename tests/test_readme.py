"""The README's captured `lrphase probe examples/digits_mlp.py` output is still what the command prints.

The block between ``<!-- probe-output:start -->`` and ``<!-- probe-output:end -->`` was pasted
from a real run (``COLUMNS=100 lrphase probe examples/digits_mlp.py``). This test runs the same
command and compares every table row — λ₀, NTK λ₀, η_crit, η_max, the recommended η, each run of
the measured-edge table and the phase table — and the measured-edge title. It leaves out the
diagnostic lines that depend on timing: "converged: N Lanczos products …" and "device …, J·v by
…" (``--jvp auto`` picks its mode by timing).

Words must match exactly (up to whitespace); numbers must agree to 1% plus one unit of the
README's last printed digit, so that another CPU's float rounding does not fail the test while a
changed rule or default does. Loss blow-up factors (≥ 10⁶, the blow-up threshold) only have to be
blow-ups on both sides: their size is chaotic. When this test fails after an intended change,
rerun the command above and paste its output into the README.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- probe-output:start -->", "<!-- probe-output:end -->"
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
BLOWUP = 1e6


def readme_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert START in readme and END in readme, f"README.md lacks the markers {START} … {END}"
    block = readme.split(START, 1)[1].split(END, 1)[0]
    match = re.search(r"```text\n(.*?)```", block, re.S)
    assert match, "the README's probe-output block is not a ```text code block"
    return match.group(1)


def table_rows(text: str) -> list[tuple[int, tuple[str, ...]]]:
    """Body rows of the box-drawn tables as (table number, cells), wrapped cells joined up."""
    rows: list[tuple[int, list[str]]] = []
    table = -1
    for line in ANSI.sub("", text).splitlines():
        line = line.strip()
        if line.startswith("┏"):
            table += 1
        if not line.startswith("│"):
            continue
        cells = [" ".join(cell.split()) for cell in line.strip("│").split("│")]
        if rows and rows[-1][0] == table and not cells[0]:  # continuation of a wrapped row
            previous = rows[-1][1]
            rows[-1] = (table, [" ".join(filter(None, (a, b))) for a, b in zip(previous, cells, strict=False)])
        else:
            rows.append((table, cells))
    return [(table, tuple(cells)) for table, cells in rows]


def edge_titles(text: str) -> list[str]:
    return [" ".join(line.split()) for line in ANSI.sub("", text).splitlines() if line.strip().startswith("measured edge:")]


def last_digit(token: str) -> float:
    """One unit in the last printed digit of a number token."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def same_text(expected: str, actual: str) -> bool:
    """Equal words; numbers equal to 1% plus one unit of the expected value's last printed digit."""
    if NUMBER.sub("#", expected) != NUMBER.sub("#", actual):
        return False
    for want, got in zip(NUMBER.findall(expected), NUMBER.findall(actual), strict=False):
        a, b = float(want), float(got)
        if abs(a) >= BLOWUP and abs(b) >= BLOWUP:
            continue
        if not math.isclose(a, b, rel_tol=0.01, abs_tol=last_digit(want)):
            return False
    return True


def test_readme_probe_output_matches_the_command():
    pytest.importorskip("sklearn", reason="examples/digits_mlp.py needs scikit-learn")
    expected = readme_block()
    assert expected.splitlines()[0].strip() == "$ lrphase probe examples/digits_mlp.py"
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "lrphase", "probe", "examples/digits_mlp.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    actual = done.stdout

    want_rows, got_rows = table_rows(expected), table_rows(actual)
    labels = {cells[0] for _, cells in want_rows}
    for label in ("λ₀", "η_crit = 2/λ₀", "recommended η"):
        assert label in labels, f"the README's block has no {label!r} row: {sorted(labels)}"
    assert any(label.startswith("η_max") for label in labels)

    want_titles, got_titles = edge_titles(expected), edge_titles(actual)
    assert len(want_titles) == len(got_titles), f"measured-edge tables differ: README {want_titles}, now {got_titles}"
    for want, got in zip(want_titles, got_titles, strict=False):
        assert same_text(want, got), f"measured edge: README says\n  {want}\nthe command now prints\n  {got}"

    assert [table for table, _ in want_rows] == [table for table, _ in got_rows], (
        "the tables have changed shape; rerun `COLUMNS=100 lrphase probe examples/digits_mlp.py` "
        f"and paste its output into README.md\nnow:\n{actual}"
    )
    for (_, want), (_, got) in zip(want_rows, got_rows, strict=False):
        assert len(want) == len(got) and all(same_text(w, g) for w, g in zip(want, got, strict=False)), (
            f"README row {' | '.join(want)}\nnow        {' | '.join(got)}\n"
            "rerun `COLUMNS=100 lrphase probe examples/digits_mlp.py` and paste its output into README.md"
        )


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ("0.44945", "0.44945", True),
        ("0.44945", "0.4496", True),  # within 1%: another CPU's rounding
        ("3.337", "4.45", False),  # a changed rule
        ("η·λ = 1.8", "η·λ = 1.9", True),  # one unit of the last printed digit
        ("loss blew up to 3.99e+27× its start", "loss blew up to 4.2e+26× its start", True),
        ("loss blew up to inf× its start", "loss blew up to 3e+30× its start", False),
        ("trains", "fails", False),
        ("4 runs of ≤ 40 steps", "4 runs of ≤ 50 steps", False),
    ],
)
def test_comparison_tolerates_rounding_only(expected, actual, same):
    assert same_text(expected, actual) is same
