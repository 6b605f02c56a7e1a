"""A long-lived denoiser worker, so TensorFlow starts once per refinement, not once per call.

RELION starts the external-reconstruct program afresh for every half and iteration; importing
TensorFlow and loading a model costs ~4-5 s each time (measured on 2 cores), longer than the
reconstruction itself. The refine protocol therefore starts this worker before RELION, and
the program sends x~ over a local socket and gets f(x~) back. If the worker cannot be
reached, the program loads the model itself (slower, same result) and says so in its log.

    python -m redprior_worker --model m.keras --socket /path/worker.sock
"""
import argparse
import os
import signal
import sys
import time
from multiprocessing.connection import Client, Listener

AUTHKEY = b"redprior-denoiser"


def ready_file(socket_path):
    return socket_path + ".ready"


def serve(model_path, socket_path, idle_timeout=None):
    from redprior.core.denoiser.model import Denoiser

    denoiser = Denoiser(model_path)
    if os.path.exists(socket_path):
        os.remove(socket_path)
    listener = Listener(socket_path, family="AF_UNIX", authkey=AUTHKEY)
    with open(ready_file(socket_path), "w") as fh:
        fh.write(str(os.getpid()))
    print(f"redprior worker: {model_path} loaded, listening on {socket_path}", flush=True)
    try:
        while True:
            conn = listener.accept()  # one request at a time: the halves simply queue
            with conn:
                msg = conn.recv()
                if msg.get("cmd") == "stop":
                    conn.send({"ok": True})
                    break
                try:
                    out = denoiser(msg["map"], msg["pixel_size"])
                    conn.send({"ok": True, "map": out})
                except Exception as exc:  # reported to the caller, who fails loudly
                    conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        listener.close()
        for path in (socket_path, ready_file(socket_path)):
            if os.path.exists(path):
                os.remove(path)


def denoise_remote(socket_path, vol, pixel_size, timeout=600.0):
    """f(vol) computed by a running worker; raises ConnectionError if none is there."""
    if not socket_path or not os.path.exists(ready_file(socket_path)):
        raise ConnectionError(f"no denoiser worker at {socket_path}")
    conn = Client(socket_path, family="AF_UNIX", authkey=AUTHKEY)
    with conn:
        conn.send({"map": vol, "pixel_size": pixel_size})
        if not conn.poll(timeout):
            raise ConnectionError(f"denoiser worker at {socket_path} did not answer in {timeout} s")
        reply = conn.recv()
    if not reply.get("ok"):
        raise RuntimeError(f"denoiser worker failed: {reply.get('error')}")
    return reply["map"]


def stop(socket_path):
    try:
        conn = Client(socket_path, family="AF_UNIX", authkey=AUTHKEY)
        with conn:
            conn.send({"cmd": "stop"})
            conn.poll(30)
    except (OSError, EOFError):
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


def main(argv=None):
    p = argparse.ArgumentParser(prog="redprior_worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--socket", required=True)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    serve(args.model, args.socket)
    return 0
