"""Files that are never half-written: results, records and clocks are written to a temporary file in the
same directory and renamed over the old one, so a reader (or a run restarted after a crash) sees the old
file or the whole new one."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, move it onto ``path``.

    For writers that want a file name (``torch.save``, ``fig.savefig``); the writer must have closed the file
    when the block ends. The temporary name keeps the target's suffix because matplotlib picks the image format
    from it. The file gets the mode a plain ``open`` would give (mkstemp's is owner-only). On error the
    temporary file is removed and the old ``path`` is left as it was.

    ``exclusive=True``: the first writer wins. If ``path`` exists when the block ends (another process published
    it meanwhile), it is left alone and ``FileExistsError`` is raised, so the caller can adopt that file. The
    publication is a hard link, which fails atomically when the name exists; on a filesystem without hard links
    (FAT, some FUSE and SMB mounts) it falls back to check-then-rename, which two writers finishing in the same
    instant can both pass (the later one's file then stands, whole).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix=f'.tmp{path.suffix}')
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDWR)   # Windows flushes only through a handle with write access
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        if exclusive:
            _publish_once(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _publish_once(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)   # unlike a rename, a link fails when the name exists: no window between check and write
    except FileExistsError:
        raise
    except OSError:          # no hard links here (EPERM, ENOTSUP, ENOSYS, ...)
        if path.exists():
            raise FileExistsError(errno.EEXIST, 'already published', str(path)) from None
        os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)   # the only way to read it is to set it
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (parents created); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def copy_once(src: str | os.PathLike, dst: str | os.PathLike) -> bool:
    """Copy ``src`` to ``dst`` atomically unless ``dst`` exists; a copy another process publishes first wins.
    Returns whether this call wrote ``dst``."""
    if Path(dst).exists():
        return False
    try:
        with atomic_path(dst, exclusive=True) as tmp:
            shutil.copyfile(src, tmp)
    except FileExistsError:
        return False
    return True


def write_json_atomic(path: str | os.PathLike, data: dict, indent: int = 1, sort_keys: bool = True) -> Path:
    """``data`` as JSON (non-JSON values as ``str``), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + '\n')


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Save a matplotlib figure atomically and close it; returns the path written.

    A path without a suffix gets ``.png``, the name ``savefig`` itself would have used, so the returned path is
    the file that exists (callers link it from markdown)."""
    import matplotlib.pyplot as plt
    path = Path(path) if Path(path).suffix else Path(path).with_suffix('.png')
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **savefig_kwargs)
    finally:
        plt.close(fig)   # a figure left open holds its memory for the life of the process
    return path


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when there is no such file."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
