"""Writing a user-named output file (``--out``, ``--export``): atomically, never replacing what is not a file.

A regular file (or a new path) is written beside itself and renamed over, so a
reader never sees half a file and a failure (a full disk) leaves the old one
whole. A symlink is followed: its target is written, the link stays. A device,
FIFO or terminal (``/dev/full``, ``/dev/stdout``, ``/proc/self/fd/1``) is
written through, in place: replacing it with a regular file would destroy it
(as root, ``/dev/full`` itself). A folder is refused. Every failure is one
:class:`~cnnsearch.ground.errors.CnnsearchError` line.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cnnsearch.ground.errors import CnnsearchError


def write_file(path: str | os.PathLike[str], data: bytes | str, *, flag: str = "--out",
               what: str = "the file") -> Path:
    """Write ``data`` to ``path`` (see the module's rules); returns the path written.

    Raises:
        CnnsearchError: ``path`` is a folder, its folder cannot be made, or the write failed
            (nothing is left behind: a regular target keeps its old content).
    """
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = os.stat(path).st_mode  # follows symlinks: what a write would land on
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise _error(path, flag, what, exc) from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise CnnsearchError(f"{flag} {path}: expected a file; received a folder; name a file inside it")
    try:
        if mode is not None and not stat.S_ISREG(mode):
            with open(path, "wb") as fh:  # a device, FIFO or terminal: through it, never over it
                fh.write(blob)
            return path
        target = path.resolve() if path.is_symlink() else path  # the link stays; its target gets the content
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace(target, blob)
    except OSError as exc:
        raise _error(path, flag, what, exc) from exc
    return path


def _replace(target: Path, blob: bytes) -> None:
    """Write ``blob`` to a temporary file beside ``target``, then rename it over ``target`` (atomic)."""
    with replacing(target) as tmp:
        tmp.write_bytes(blob)


@contextmanager
def replacing(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """The one atomic write: a temporary path beside ``target``, renamed over it when the block ends.

    The block writes the temporary path (by any means: ``np.savez``, ``model.save``, ``fig.savefig``);
    a block that raises (a full disk) leaves ``target`` as it was and no temporary file behind. Beside
    the target, so the rename stays on one filesystem; named with ``suffix`` (default: the target's own,
    since Keras and matplotlib read the format from it); readable as an ordinary file (mkstemp's private
    mode is widened to the umask's). For user-named outputs, which may be devices, use :func:`write_file`.
    """
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name[:40]}-", suffix=suffix or target.suffix or ".tmp",
                                dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _error(path: Path, flag: str, what: str, exc: OSError) -> CnnsearchError:
    if exc.errno == errno.ENOSPC:
        cause, fix = "no space left on device", "free some space or pick another place"
    elif exc.errno == errno.ENAMETOOLONG:
        cause, fix = "the name is too long", "pick a shorter path"
    else:
        cause, fix = f"{exc.strerror or exc}: {exc.filename or path}", "pass a path in a folder you can write to"
    return CnnsearchError(f"{flag} {path}: cannot write {what} there ({cause}); nothing was replaced; {fix}")


__all__ = ["replacing", "write_file"]
