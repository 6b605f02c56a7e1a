"""Console entry point that RELION runs through RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE.

It lives outside the `redprior` package on purpose: importing `redprior` loads Scipion
(pwem) to define the plugin, which costs about 1.5 s per call and needs Scipion's settings.
REDPRIOR_CORE_ONLY tells redprior/__init__.py to skip that; only the numpy core is used.
"""
import os
import sys

os.environ["REDPRIOR_CORE_ONLY"] = "1"

from redprior.core.prior.exrecon import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
