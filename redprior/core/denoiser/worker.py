"""A long-lived denoiser worker, so TensorFlow starts once per refinement, not once per call.

RELION starts the external-reconstruct program afresh for every half and iteration; importing
TensorFlow and loading a model costs ~4-5 s each time (measured on 2 cores), longer than the
reconstruction itself. The refine protocol therefore starts this worker before RELION, and
the program sends x~ over a local socket and gets f(x~) back.

Every wait is bounded: connecting, sending and the reply each have a timeout, and a worker
that is gone, stopped or busy beyond the bound raises WorkerUnavailable, on which the hook
loads the model itself (slower, same result) and says so in its log. The socket lives in a
private folder (mode 0700) made by the protocol; messages are length-prefixed pickles.

RELION calls the hook for both halves at once, so every connection is served in its own
thread with the one loaded model (Keras inference from several threads gives the same maps
as one at a time, checked on the shipped model): the halves do not queue. At most
MAX_PASSES network passes run together (memory: one pass each); further requests wait for a
free pass at most PASS_WAIT_TIMEOUT, then are told the worker is busy (WorkerUnavailable).
On startup the worker logs the device it runs on: start(gpu=...) sets CUDA_VISIBLE_DEVICES.

    python -m redprior_worker --model m.keras --socket /path/worker.sock
"""
import argparse
import os
import pickle
import signal
import socket as sock
import struct
import sys
import threading
import time

CONNECT_TIMEOUT = 10.0    # s: a live worker accepts at once (the kernel queues connections)
REPLY_TIMEOUT = 900.0     # s: one network pass, possibly behind the other half's
REQUEST_TIMEOUT = 60.0    # s: the worker waits this long for a client's request
MAX_PASSES = 2            # network passes at once: RELION's two halves
PASS_WAIT_TIMEOUT = REPLY_TIMEOUT  # s a request waits for a free pass before 'busy'
MAX_CONNECTIONS = 8       # requests held at once (each with its map); more wait in the kernel
STOP_GRACE = 10.0         # s: after 'stop', passes still running may finish and reply
_POLL = 0.2               # s: how often the accept loop looks whether it was stopped
_HEADER = struct.Struct("!Q")


class WorkerUnavailable(ConnectionError):
    """No answer from the worker within the bound (gone, stopped, busy or broken)."""


def ready_file(socket_path):
    return socket_path + ".ready"


def _send(conn, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    conn.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(conn, n):
    chunks, got = [], 0
    while got < n:
        chunk = conn.recv(min(n - got, 1 << 22))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(conn):
    (n,) = _HEADER.unpack(_recv_exact(conn, _HEADER.size))
    return pickle.loads(_recv_exact(conn, n))


def device_line():
    """The device TensorFlow runs the network on, as one log line (GPU memory: grown on demand,
    so the card can be shared)."""
    try:
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
    except Exception as exc:  # a broken CUDA set-up must not stop the worker
        return f"redprior worker: no GPU usable ({type(exc).__name__}: {exc}), running on the CPU"
    if gpus:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except (RuntimeError, ValueError):
                pass
        more = f" (first of {len(gpus)} visible)" if len(gpus) > 1 else ""
        return f"redprior worker: using GPU {gpus[0].name}{more}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        reason = "none requested: CUDA_VISIBLE_DEVICES is empty"
    elif not tf.test.is_built_with_cuda():
        reason = "this TensorFlow is built without CUDA; pip install 'scipion-em-redprior[gpu]'"
    else:
        reason = f"TensorFlow finds no CUDA device, CUDA_VISIBLE_DEVICES={visible!r}"
    return f"redprior worker: no GPU usable ({reason}), running on the CPU"


def logged_device(log_path):
    """The device line a worker wrote into its log (the last one), or a note that none is."""
    try:
        with open(log_path, errors="replace") as fh:
            lines = [ln.strip() for ln in fh if ln.startswith("redprior worker: ")
                     and ("using GPU" in ln or "no GPU usable" in ln)]
    except OSError:
        lines = []
    return lines[-1] if lines else f"no device line in {log_path}"


def _log(text):
    print(f"redprior worker: {text}", flush=True)


def _denoise(denoiser, msg, passes, wait):
    """The reply to one map: waits (bounded) for one of the network passes."""
    if not passes.acquire(timeout=wait):
        return {"ok": False, "busy": f"no network pass free within {wait:g} s"}
    try:
        return {"ok": True, "map": denoiser(msg["map"], msg["pixel_size"])}
    except Exception as exc:  # reported to the caller, who fails loudly
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        passes.release()


def _handle(conn, denoiser, passes, stopping, pass_wait):
    """One connection: read the request, answer it (every wait bounded)."""
    with conn:
        conn.settimeout(REQUEST_TIMEOUT)  # a client that never sends cannot block us
        try:
            msg = _recv(conn)
            if not isinstance(msg, dict):
                raise pickle.UnpicklingError(f"not a request: {type(msg).__name__}")
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            _log(f"dropped a request ({exc})")
            return
        if msg.get("cmd") == "stop":
            stopping.set()
            reply = {"ok": True}
        else:
            reply = _denoise(denoiser, msg, passes, pass_wait)
        try:
            _send(conn, reply)
        except OSError as exc:  # the caller gave up (timeout) and went on alone
            _log(f"could not reply ({exc})")


def process_alive(pid):
    """Whether process pid exists (signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def serve(model_path, socket_path, denoiser=None, max_passes=MAX_PASSES,
          pass_wait=PASS_WAIT_TIMEOUT, parent=None):
    """Serve maps on socket_path until a 'stop' request, each connection in its own thread,
    or until the process `parent` (a pid) is gone.

    denoiser: a callable (map, pixel_size) -> map to serve instead of loading model_path
    (tests). max_passes: network passes at once; pass_wait: seconds a request waits for one.
    parent: the process that started the worker (start() passes its own): if it is killed
    without stopping the worker (kill -9 of a refinement), the worker does not linger with
    the model in memory.
    """
    if denoiser is None:
        print(device_line(), flush=True)
        from .model import Denoiser

        denoiser = Denoiser(model_path)
    if os.path.exists(socket_path):
        os.remove(socket_path)
    server = sock.socket(sock.AF_UNIX, sock.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(8)
    server.settimeout(_POLL)  # accept() wakes up to see a stop
    passes = threading.BoundedSemaphore(max_passes)
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    stopping = threading.Event()
    handlers = []

    def run(conn):
        try:
            _handle(conn, denoiser, passes, stopping, pass_wait)
        finally:
            slots.release()

    with open(ready_file(socket_path), "w") as fh:
        fh.write(str(os.getpid()))
    _log(f"{model_path} loaded, listening on {socket_path} (up to {max_passes} passes at once)")
    try:
        while not stopping.is_set():
            if parent and not process_alive(parent):
                _log(f"the process that started this worker ({parent}) is gone: stopping")
                break
            if not slots.acquire(timeout=_POLL):
                continue
            try:
                conn, _ = server.accept()
            except sock.timeout:
                slots.release()
                continue
            except OSError:
                slots.release()
                raise
            handler = threading.Thread(target=run, args=(conn,), daemon=True)
            handler.start()
            handlers = [h for h in handlers if h.is_alive()] + [handler]
    finally:
        for path in (ready_file(socket_path), socket_path):
            if os.path.exists(path):
                os.remove(path)
        server.close()
        end = time.time() + STOP_GRACE
        for handler in handlers:  # passes still running may finish (bounded)
            handler.join(max(end - time.time(), 0.0))


def _request(socket_path, msg, reply_timeout):
    if not socket_path or not os.path.exists(ready_file(socket_path)):
        raise WorkerUnavailable(f"no denoiser worker at {socket_path}")
    conn = sock.socket(sock.AF_UNIX, sock.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT)
        conn.connect(socket_path)
        _send(conn, msg)
        conn.settimeout(reply_timeout)
        return _recv(conn)
    except sock.timeout as exc:
        raise WorkerUnavailable(f"denoiser worker at {socket_path} did not answer within "
                                f"{reply_timeout:g} s (stopped or busy)") from exc
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        raise WorkerUnavailable(f"denoiser worker at {socket_path} is unreachable ({exc})") \
            from exc
    finally:
        conn.close()


def denoise_remote(socket_path, vol, pixel_size, timeout=REPLY_TIMEOUT):
    """f(vol) computed by a running worker; WorkerUnavailable if none answers in time."""
    reply = _request(socket_path, {"map": vol, "pixel_size": pixel_size}, timeout)
    if reply.get("busy"):
        raise WorkerUnavailable(f"denoiser worker at {socket_path} is busy ({reply['busy']})")
    if not reply.get("ok"):
        raise RuntimeError(f"denoiser worker failed: {reply.get('error')}")
    return reply["map"]


def stop(socket_path, timeout=30.0):
    try:
        _request(socket_path, {"cmd": "stop"}, timeout)
    except WorkerUnavailable:
        pass


def wait_ready(socket_path, process=None, timeout=300.0):
    """Wait until the worker has loaded its model; False if it died or timed out."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(ready_file(socket_path)):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def cuda_devices(gpu):
    """CUDA_VISIBLE_DEVICES for the worker: '' (CPU only) for None or empty, else the ids.

    gpu: '0', '0,1', a list of ids, or RELION's per-rank syntax ('0,0:1,1' -> '0,1')."""
    if gpu is None:
        return ""
    items = gpu if isinstance(gpu, (list, tuple)) else str(gpu).replace(":", ",").split(",")
    ids = []
    for item in items:
        item = str(item).strip().strip('"').strip()
        if item and item not in ids:
            ids.append(item)
    return ",".join(ids)


def start(model_path, log_path, timeout=300.0, python=None, gpu=None):
    """Start a worker for `model_path` (its output appended to log_path) and wait until it has
    loaded the model. Returns (process, socket path); RuntimeError with the log's end if it
    could not load the model. The socket sits in a private temporary folder (AF_UNIX paths
    are limited to ~100 characters, so not in the project). gpu: the GPU ids the worker may
    use (cuda_devices); None or '': the CPU only. Either way its log says which it uses."""
    import subprocess
    import tempfile

    socket_path = os.path.join(tempfile.mkdtemp(prefix="redprior_"), "worker.sock")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=cuda_devices(gpu))
    with open(log_path, "a") as log:
        proc = subprocess.Popen([python or sys.executable, "-m", "redprior_worker", "--model",
                                 os.path.abspath(model_path), "--socket", socket_path,
                                 "--parent", str(os.getpid())],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    if not wait_ready(socket_path, proc, timeout):
        if proc.poll() is None:
            proc.kill()
        with open(log_path) as fh:
            tail = "".join(fh.readlines()[-15:])
        raise RuntimeError(f"The denoiser worker could not load {model_path}. Its log "
                           f"({log_path}) ends with:\n{tail}")
    return proc, socket_path


def shutdown(proc, socket_path):
    """Stop a worker started by start() and remove its socket folder (bounded waits)."""
    import shutil
    import subprocess

    if proc is None:
        return
    stop(socket_path)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="redprior_worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--parent", type=int, default=0,
                   help="stop when this process is gone (start() gives its own pid)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    serve(args.model, args.socket, parent=args.parent or None)
    return 0
