"""JSON files the plugin writes and reads back (results, metadata, logs of a run)."""
import json
import os

import numpy as np

from .atomic import atomic_path


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


def to_jsonable(obj):
    """Nested dicts/lists with numpy arrays and scalars -> JSON-compatible (inf, NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path, obj, indent=1):
    """Write `obj` (numpy allowed, see to_jsonable) atomically with the user's umask: a reader
    never sees half a file."""
    with atomic_path(path, suffix=".json") as tmp:
        with open(tmp, "w") as fh:
            json.dump(to_jsonable(obj), fh, indent=indent)
