"""Links a lab puts under the runbooks' system path bases.

A runbook's path parameter is relative to a fixed base (/etc/nginx, /mnt/backups/postgres, ...),
so a lab reaches its own directories through `<base>/runbooks-lab-<hash of the lab root>`
symlinks. A base that did not exist is created with a marker file in every folder the lab
made, so the last lab to leave removes exactly what labs created and nothing of the system's.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .processes import LabError

BASE_MARKER = ".created-by-runbooks-lab"


def link_into(base: Path, name: str, target: Path) -> Path:
    """`base/name` -> target (replacing this lab's older link); returns the link."""
    _make_base(base)
    link = base / name
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise LabError(f"{link} exists and is not a lab's link; remove it")
    link.symlink_to(target)
    return link


def unlink_from(base: Path, name: str) -> None:
    """Remove `base/name`, then every folder up from base that a lab created and that holds
    nothing but its marker any more."""
    link = base / name
    if link.is_symlink():
        link.unlink()
    folder = base
    with contextlib.suppress(OSError):  # another lab just came or went
        while [p.name for p in folder.iterdir()] == [BASE_MARKER]:
            (folder / BASE_MARKER).unlink()
            folder.rmdir()
            folder = folder.parent


def _make_base(base: Path) -> None:
    missing = []
    folder = base
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
            (folder / BASE_MARKER).touch()
        except FileExistsError:
            pass  # another lab made it meanwhile
