"""``harness data check``: open every image and mask listed in split files under a dataset root."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TextIO

from ..errors import DataError
from .readers import make_layout, read_image, read_mask, size_mismatch_hint
from .registry import get_dataset
from .splits import read_split_file


@dataclass
class CheckReport:
    """Outcome of :func:`check_dataset_root`; ``exit_code`` is 0 when every file was read, else 1."""

    dataset: str
    root: Path
    split_files: list[Path]
    checked: int = 0                                                        # files opened
    missing: list[tuple[str, Path]] = field(default_factory=list)           # (split file:entry, path)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)        # (path, reason)
    notes: list[str] = field(default_factory=list)
    optional: list[tuple[Path, str]] = field(default_factory=list)          # masks training does not read

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unreadable

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def format(self, first_n: int = 10) -> str:
        lines = [f"{self.dataset} root {self.root}: {len(self.split_files)} split file(s), {self.checked} files opened, "
                 f"{len(self.missing)} missing, {len(self.unreadable)} unreadable"]
        if self.missing:
            lines.append(f"missing ({len(self.missing)}; first {min(first_n, len(self.missing))}):")
            lines += [f"  {p}  (listed in {where})" for where, p in self.missing[:first_n]]
        if self.unreadable:
            lines.append(f"unreadable or invalid ({len(self.unreadable)}; first {min(first_n, len(self.unreadable))}):")
            lines += [f"  {p}: {why}" for p, why in self.unreadable[:first_n]]
        if self.optional:
            lines.append(f"warning: {len(self.optional)} mask(s) of unlabeled lists are missing or unreadable; training "
                         f"does not read them, `harness eval --split unlabeled` does (first "
                         f"{min(first_n, len(self.optional))}):")
            lines += [f"  {p}: {why}" for p, why in self.optional[:first_n]]
        lines += [f"note: {n}" for n in self.notes]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)

    def print(self, file: TextIO | None = None, first_n: int = 10) -> None:
        print(self.format(first_n), file=file or sys.stdout)


def check_dataset_root(dataset: str, root: str | Path, split_files: Sequence[str | Path],
                       num_classes: int | None = None, workers: int = 4, print_report: bool = False,
                       first_n: int = 10, progress: Callable[[int, int], None] | None = None,
                       unlabeled: Sequence[str | Path] = ()) -> CheckReport:
    """Open every image and mask named in ``split_files`` (each file once) and report what fails.

    Masks are checked for their values ({0..K−1, 255} after the dataset's decoding, K = ``num_classes``, by
    default the registered dataset's class count) and for matching their image's size. A missing root or wrong layout raises DataError.
    Masks of the ``unlabeled`` split files (training does not read them) that are missing or unreadable are
    warnings (``CheckReport.optional``), not failures.
    """
    root = Path(root)
    layout = make_layout(dataset, root, masks=True)
    k = num_classes if num_classes is not None else get_dataset(dataset).num_classes
    report = CheckReport(dataset, root, [Path(p) for p in split_files])
    unlabeled_files = {Path(p) for p in unlabeled}
    pairs: dict[tuple[Path, Path], tuple[str, object, bool]] = {}
    for sf in report.split_files:
        for i, (img_rel, mask_rel) in enumerate(read_split_file(sf)):
            mpath, lut = layout.mask_path(mask_rel)
            key = (layout.image_path(img_rel), mpath)
            if key not in pairs:
                pairs[key] = (f"{sf}:{i + 1}", lut, sf in unlabeled_files)
    report.notes += layout.check_notes(sum(1 for _, lut, _ in pairs.values() if lut is not None))

    def one(item):
        (ipath, mpath), (where, lut, mask_optional) = item
        problems: list[tuple[str, Path, str]] = []
        shapes = []
        for kind, path in (("image", ipath), ("mask", mpath)):
            if not path.is_file():
                problems.append(("optional" if kind == "mask" and mask_optional else "missing", path,
                                 f"missing (listed in {where})" if mask_optional else where))
                continue
            try:
                arr = read_image(path) if kind == "image" else read_mask(path, k, lut, layout.mask_hint())
                shapes.append(arr.shape[:2])
            except DataError as exc:
                problems.append(("optional" if kind == "mask" and mask_optional else "unreadable", path, str(exc)))
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            problems.append(("optional" if mask_optional else "unreadable", mpath,
                             f"size {shapes[1][1]}×{shapes[1][0]} differs from image {ipath} "
                             f"({shapes[0][1]}×{shapes[0][0]}, W×H).{size_mismatch_hint(ipath, shapes[0], shapes[1])}"))
        return len(shapes), problems

    items = list(pairs.items())
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for n, (opened, problems) in enumerate(pool.map(one, items), start=1):
            report.checked += opened
            for what, path, info in problems:
                if what == "missing":
                    report.missing.append((info, path))
                elif what == "optional":
                    report.optional.append((path, info))
                else:
                    report.unreadable.append((path, info))
            if progress is not None:
                progress(n, len(items))
    if print_report:
        report.print(first_n=first_n)
    return report
