"""JSON files the plugin writes and reads back (results, metadata, logs of a run)."""
import json
import os
import tempfile


class JsonFileError(ValueError):
    """A JSON file exists but cannot be read; the message names the file."""


def read_json(path, default=None):
    """The content of a JSON file; `default` ({} if not given) when there is no such file.

    A file that exists but is not JSON raises JsonFileError naming it, never a raw traceback.
    """
    if not path or not os.path.exists(path):
        return {} if default is None else default
    try:
        with open(path) as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonFileError(f"{path} is not a valid JSON file ({exc}): restore it from the run "
                            "that wrote it, or delete it and run that step again.") from exc


def write_json(path, obj, indent=1):
    """Write `obj` atomically (a reader never sees half a file), with the user's umask."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=indent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
