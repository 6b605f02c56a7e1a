"""Writing a file so that no reader ever sees half of it, with the modes users expect."""
import contextlib
import os
import tempfile


def umask_mode(mode=0o666):
    """`mode` as the user's umask leaves it (what open() would give a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to `path`; on success it replaces `path` (same folder, so
    the rename is atomic) with the umask's mode, not mkstemp's 0600; on failure it is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=folder, prefix=".tmp_")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
