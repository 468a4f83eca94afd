"""A sampling profile of a running process with py-spy: where its time goes, undistorted.

cProfile times every call, and the gateway makes millions of small ones: it inflates them
several times over and moves the shares (an allocation record's encoding read 60 ms per
1,000-account order under cProfile and 10 ms in fact). py-spy reads the process's stacks
from outside, a few hundred times a second, and the process runs at its own speed.
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# "function (path/to/module.py:123)" -> "function (module.py)": lines of one function merge.
_FRAME = re.compile(r" \((?:.*/)?([^/]+?):\d+\)$")


def py_spy() -> str | None:
    """The py-spy executable of this environment (a dev dependency), or on the PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Sampler:
    """py-spy recording a process until stop(); the samples are kept in raw (folded) form."""

    def __init__(self, pid: int, output: Path, rate_hz: int = 200) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("py-spy is not installed (uv sync --group dev installs it)")
        self.output = output
        self._process = subprocess.Popen(
            [executable, "record", "--pid", str(pid), "--format", "raw", "--output",
             str(output), "--rate", str(rate_hz), "--nonblocking", "--threads"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self) -> None:
        """Ends the recording; py-spy writes its file on SIGINT."""
        self._process.send_signal(signal.SIGINT)
        _, errors = self._process.communicate(timeout=60)
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no samples: {errors.decode(errors='replace')}")


@dataclass(frozen=True, slots=True)
class Shares:
    samples: int
    own: list[tuple[str, float]]  # (function, % of samples) where the sample was taken
    inclusive: list[tuple[str, float]]  # (function, % of samples) anywhere on the stack


def shares(folded: Path, top: int) -> Shares:
    """Percent of samples per function, from py-spy's raw output (one stack and count a line)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        # The first frame names the thread; the rest, outermost first, are functions.
        frames = [_FRAME.sub(r" (\1)", frame) for frame in stack.split(";")[1:]] or ["(idle)"]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def percent(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / max(total, 1), 1)) for name, n in counter.most_common(top)]

    return Shares(total, percent(own), percent(inclusive))


def report(result: Shares) -> str:
    lines = [f"{result.samples} samples (all threads)", "", "own time (% of samples)"]
    lines += [f"  {share:5.1f}%  {name}" for name, share in result.own]
    lines += ["", "inclusive: on the stack (% of samples)"]
    lines += [f"  {share:5.1f}%  {name}" for name, share in result.inclusive]
    return "\n".join(lines)
