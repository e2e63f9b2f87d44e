"""Running a checkout of an official repository (UniMatch, iMAS) on the conformance inputs.

Nothing of the official code is copied into the project. The golden scripts take the path of a checkout, put it
on ``sys.path``, and

* import its functions and classes (``ProbOhemCrossEntropy2d``, ``obtain_cutmix_box``, ``DeepLabV3Plus``,
  ``compute_ulb_hardness_all``, ``cut_mix_by_hardness``, …);
* run statements that exist only inline in a training script (UniMatch's step, iMAS's step and EMA update) by
  reading those lines from the checkout, between two marker lines, and executing them in a namespace holding the
  inputs (:func:`official_block`). The markers are exact source lines, so a checkout in which they moved or
  changed fails loudly instead of running something else.

Runtime shims, nothing installed: ``Tensor.cuda`` / ``Module.cuda`` return their argument (the official code calls
``.cuda()`` on CPU tensors); ``np.int`` (removed in NumPy 1.24) is ``int``. :class:`DrawFeed` answers the official
``random.random``, ``np.random.uniform`` and ``np.random.randint`` calls from a torch stream, so that official and
harness code consume the same random numbers.
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from harness.augment import integer_draws, uniform_draws  # noqa: E402


def checkout(path: str | Path, marker: str) -> Path:
    """The checkout's root, on ``sys.path``; ``marker`` is a file it must contain."""
    root = Path(path).expanduser().resolve()
    if not (root / marker).is_file():
        raise SystemExit(f"{root} is not a checkout of the official repository: {marker} is missing")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def commit_of(root: Path) -> str:
    """``git rev-parse HEAD`` of the checkout (with ``-modified`` if a tracked .py file differs from it), or
    'unknown' for a copy without git metadata."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "*.py"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-modified" if dirty else "")


def cpu_shims() -> None:
    """``.cuda()`` is the identity; NumPy aliases removed since 1.24 come back."""
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    for alias, typ in (("int", int), ("float", float), ("bool", bool)):
        if alias not in np.__dict__:
            setattr(np, alias, typ)


@dataclass
class Block:
    code: str
    path: Path
    first: int  # 1-based line numbers in the official file, inclusive
    last: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.first}-{self.last}"

    def run(self, namespace: dict) -> dict:
        exec(compile(self.code, f"{self.path}:{self.first}", "exec"), namespace)
        return namespace


def official_block(path: Path, first: str, last: str, after: str | None = None, include_last: bool = True) -> Block:
    """The lines of ``path`` from the first line equal (stripped) to ``first`` — after the first line equal to
    ``after`` when given — to the next line equal to ``last`` (or the line before it when ``include_last`` is
    false), comment lines dropped, dedented."""
    lines = path.read_text().splitlines()

    def find(text: str, start: int) -> int:
        for i in range(start, len(lines)):
            if lines[i].strip() == text:
                return i
        raise SystemExit(f"{path}: line {text!r} not found (after line {start + 1}); is this the pinned commit?")

    start = find(after, 0) + 1 if after else 0
    i = find(first, start)
    j = find(last, i) - (0 if include_last else 1)
    body = [ln for ln in lines[i:j + 1] if not ln.strip().startswith("#")]
    return Block(textwrap.dedent("\n".join(body)) + "\n", path, i + 1, j + 1)


class DrawFeed:
    """Within ``with``: ``random.random()``, ``np.random.uniform`` and ``np.random.randint`` return draws from
    ``generator`` (torch's global CPU RNG if None), taken with ``harness.augment``'s ``uniform_draws`` (float64)
    and ``integer_draws`` exactly as the harness takes them; ``uniform(a, b)`` is ``a + (b − a)·u``, NumPy's
    formula. ``draws`` records every value handed out."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator
        self.draws: list = []

    def _random(self) -> float:
        u = float(uniform_draws(1, self.generator)[0])
        self.draws.append(("random", u))
        return u

    def _uniform(self, low=0.0, high=1.0, size=None):
        n = 1 if size is None else int(np.prod(size))
        u = uniform_draws(n, self.generator).cpu().numpy()
        v = low + (high - low) * u
        self.draws.append(("uniform", v.tolist()))
        return float(v[0]) if size is None else v.reshape(size)

    def _randint(self, low, high=None, size=None, dtype=None):
        if high is None:
            low, high = 0, low
        n = 1 if size is None else int(np.prod(size))
        v = integer_draws(int(low), int(high), n, self.generator).cpu().numpy()
        self.draws.append(("randint", v.tolist()))
        return int(v[0]) if size is None else v.reshape(size)

    def __enter__(self) -> "DrawFeed":
        self._saved = (random.random, np.random.uniform, np.random.randint)
        random.random, np.random.uniform, np.random.randint = self._random, self._uniform, self._randint
        return self

    def __exit__(self, *exc) -> None:
        random.random, np.random.uniform, np.random.randint = self._saved


# ----------------------------------------------------------------------------------------------------
# comparison helpers for the printed table of measured differences


def numeric_pairs(a, b, path: str = ""):
    """(path, a, b) for every float leaf of two same-shaped JSON-like structures; other leaves must be equal."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys differ"
        for k in a:
            yield from numeric_pairs(a[k], b[k], f"{path}.{k}" if path else str(k))
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from numeric_pairs(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        yield path, float(a), float(b)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def max_differences(official, harness) -> dict:
    """Max absolute difference over the float leaves (input fingerprints excluded, they must be equal), the
    largest |official| leaf for scale, and the number of float leaves; every other leaf (ints, strings, booleans,
    None) must be equal."""
    max_abs, scale, n = 0.0, 0.0, 0
    for path, x, y in numeric_pairs(official, harness):
        if path.split(".")[-1] == "inputs_fingerprint":
            assert x == y, f"{path}: the two sides had different inputs"
            continue
        max_abs, scale, n = max(max_abs, abs(x - y)), max(scale, abs(x)), n + 1
    return {"max_abs": max_abs, "scale": scale, "floats": n}


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line and every list on a single line (readable diffs, small files)."""
    if isinstance(obj, dict) and obj:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj, separators=(",", ":"))


def write_golden(path: str | Path, golden: dict) -> None:
    Path(path).write_text(dumps(golden) + "\n")


def about(repository: str, root: Path, blocks: dict, script: str) -> dict:
    """The golden file's header: which official code, which lines of it, generated with what."""
    return {"repository": repository, "commit": commit_of(root), "blocks": blocks,
            "generated_with": {"torch": torch.__version__, "numpy": np.__version__,
                               "python": platform.python_version()},
            "command": f"python benchmarks/conformance/{script}"}


def finish(out: str | Path, golden: dict, measured: dict, t0: float) -> None:
    """Store what was measured against the harness with the golden values, write them, and say so."""
    golden["measured_at_generation"] = measured
    write_golden(out, golden)
    print(json.dumps(measured, indent=1))
    print(f"wrote {out} ({time.time() - t0:.0f} s)")


def ohem_golden(criterion) -> tuple[dict, dict]:
    """The official OHEM criterion (``criterion(case)`` builds it) on every OHEM case, against the harness's.
    One official call per device batch of ``group`` crops; data parallelism averages them."""
    from tests.conformance import cases

    golden, harness = {}, {}
    for case in cases.OHEM_CASES:
        logits, target = cases.ohem_inputs(case)
        fp = cases.fingerprint(logits, target)
        logits.requires_grad_(True)
        crit, g = criterion(case), case["group"]
        loss = torch.stack([crit(logits[i:i + g], target[i:i + g]) for i in range(0, case["batch"], g)]).mean()
        loss.backward()
        golden[case["name"]] = {"inputs_fingerprint": fp, "loss": float(loss.detach()),
                                "grad": cases.summary(logits.grad, 32)}
        harness[case["name"]] = cases.harness_ohem(case)
    return golden, harness
