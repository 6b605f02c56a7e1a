"""Console entry point of the long-lived denoiser worker (see redprior/core/worker.py).

Outside the package for the same reason as redprior_exrecon: no Scipion import needed.
"""
import os
import sys

os.environ["REDPRIOR_CORE_ONLY"] = "1"

from redprior.core.denoiser.worker import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
