"""A long-lived denoiser worker, so TensorFlow starts once per refinement, not once per call.

RELION starts the external-reconstruct program afresh for every half and iteration; importing
TensorFlow and loading a model costs ~4-5 s each time (measured on 2 cores), longer than the
reconstruction itself. The refine protocol therefore starts this worker before RELION, and
the program sends x~ over a local socket and gets f(x~) back.

Every wait is bounded: connecting, sending and the reply each have a timeout, and a worker
that is gone, stopped or busy beyond the bound raises WorkerUnavailable, on which the hook
loads the model itself (slower, same result) and says so in its log. The socket lives in a
private folder (mode 0700) made by the protocol; messages are length-prefixed pickles.

    python -m redprior_worker --model m.keras --socket /path/worker.sock
"""
import argparse
import os
import pickle
import signal
import socket as sock
import struct
import sys
import time

CONNECT_TIMEOUT = 10.0    # s: a live worker accepts at once (the kernel queues connections)
REPLY_TIMEOUT = 900.0     # s: one network pass, possibly behind the other half's
REQUEST_TIMEOUT = 60.0    # s: the worker waits this long for a client's request
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


def serve(model_path, socket_path):
    from .model import Denoiser

    denoiser = Denoiser(model_path)
    if os.path.exists(socket_path):
        os.remove(socket_path)
    server = sock.socket(sock.AF_UNIX, sock.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(8)
    with open(ready_file(socket_path), "w") as fh:
        fh.write(str(os.getpid()))
    print(f"redprior worker: {model_path} loaded, listening on {socket_path}", flush=True)
    try:
        while True:
            conn, _ = server.accept()  # one request at a time: the halves queue
            with conn:
                conn.settimeout(REQUEST_TIMEOUT)  # a client that never sends cannot block us
                try:
                    msg = _recv(conn)
                except (OSError, EOFError, pickle.UnpicklingError) as exc:
                    print(f"redprior worker: dropped a request ({exc})", flush=True)
                    continue
                if msg.get("cmd") == "stop":
                    _send(conn, {"ok": True})
                    break
                try:
                    out = denoiser(msg["map"], msg["pixel_size"])
                    reply = {"ok": True, "map": out}
                except Exception as exc:  # reported to the caller, who fails loudly
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                try:
                    _send(conn, reply)
                except OSError as exc:  # the caller gave up (timeout) and went on alone
                    print(f"redprior worker: could not reply ({exc})", flush=True)
    finally:
        server.close()
        for path in (socket_path, ready_file(socket_path)):
            if os.path.exists(path):
                os.remove(path)


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


def start(model_path, log_path, timeout=300.0, python=None):
    """Start a worker for `model_path` (its output appended to log_path) and wait until it has
    loaded the model. Returns (process, socket path); RuntimeError with the log's end if it
    could not load the model. The socket sits in a private temporary folder (AF_UNIX paths
    are limited to ~100 characters, so not in the project)."""
    import subprocess
    import tempfile

    socket_path = os.path.join(tempfile.mkdtemp(prefix="redprior_"), "worker.sock")
    with open(log_path, "a") as log:
        proc = subprocess.Popen([python or sys.executable, "-m", "redprior_worker", "--model",
                                 os.path.abspath(model_path), "--socket", socket_path],
                                stdout=log, stderr=subprocess.STDOUT)
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
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    serve(args.model, args.socket)
    return 0
