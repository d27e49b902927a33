"""Atomic, crash-safe file writes: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeAlias

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

JSON: TypeAlias = "str | int | float | bool | list[JSON] | dict[str, JSON] | None"  # a value json.loads returns
JSONObject: TypeAlias = dict[str, JSON]  # a JSON object: what the files this project writes hold at the top


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it is fsynced and renamed onto ``target``.

    On any error the temp file is removed, so a reader never sees a half-written ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            # mkstemp (and some writers, e.g. safetensors) make 0600: give the file the mode open() would, so a
            # model or a shared cache can be read by another user where the umask allows it
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if type(exc).__name__ == "SafetensorError" and "I/O error" in str(exc):  # a full disk, said as an OSError
            raise OSError(f"{target}: cannot write ({str(exc).splitlines()[0]})") from exc
        raise


def temp_dir_beside(target: Path) -> Path:
    """A new empty folder beside ``target`` (to be renamed onto it), with the mode ``mkdir`` would give it
    (``mkdtemp`` makes 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())
    return tmp


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``os.umask`` sets it to read it,
    which would race with a thread creating a file)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class FileLock:
    """An advisory lock on ``path`` between processes (``flock``), so two runs sharing a cache do not compute
    or download the same entry at once. Where ``flock`` does not exist it always succeeds (no exclusion)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        if fcntl is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the descriptor drops the lock; the file stays (unlinking would race)
            self._fh = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def atomic_write(target: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``target`` atomically by calling ``write`` on a binary file handle."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        write(fh)


def write_text_atomic(target: Path, text: str) -> None:
    atomic_write(target, lambda fh: fh.write(text.encode("utf-8")))


def write_json_atomic(target: Path, data: object) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def write_csv_atomic(target: Path, header: list[str], rows: Sequence[Mapping[str, object]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(target, buf.getvalue())


def sharded_path(root: Path, key: str, suffix: str) -> Path:
    """``root/ab/abcdef….suffix``: one file per key, spread over 256 folders so none grows huge."""
    return root / key[:2] / f"{key}{suffix}"
