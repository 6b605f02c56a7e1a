"""What the RELION-running protocols share: how relion_refine and our hook are started.

The arguments themselves are built by core.relion.command (relion_refine) and
core.prior.exrecon.hook_args (the external-reconstruct program), so the refine protocol,
'training maps' and the quality benchmark run RELION the same way.
"""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from redprior import Plugin
from redprior import constants as C


class RelionRunnerMixin:
    """Runs relion_refine(_mpi) with our external-reconstruct program as RELION's hook."""

    def _runRelionRefine(self, args, hookArgs, mpi, cwd=None):
        """args: relion_refine arguments (list); hookArgs: redprior_exrecon options or None."""
        from redprior.core.prior.exrecon import hook_command

        env = Plugin.getEnviron()
        if hookArgs is not None:
            env[C.RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE] = hook_command(hookArgs)
            self.info('External reconstruct: %s' % env[C.RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE])
        name = C.RELION_REFINE_MPI if mpi > 1 else C.RELION_REFINE
        program = Plugin.getRelionProgram(name) or name
        self.runJob(program, ' '.join(shlex.quote(a) for a in args), env=env, cwd=cwd,
                    numberOfMpi=mpi, numberOfThreads=1)

    def _startDenoiserWorker(self, modelPath):
        """Start the denoiser worker (TensorFlow loaded once for the whole refinement).

        Returns (process, socket), (None, None) without a model.
        """
        if not modelPath:
            return None, None
        from redprior.core.denoiser.worker import wait_ready
        # AF_UNIX paths are limited to ~100 characters: keep the socket out of the project.
        socket = os.path.join(tempfile.mkdtemp(prefix='redprior_'), 'worker.sock')
        logFile = open(self._getExtraPath('worker.log'), 'a')
        proc = subprocess.Popen([sys.executable, '-m', 'redprior_worker', '--model',
                                 os.path.abspath(modelPath), '--socket', socket],
                                stdout=logFile, stderr=subprocess.STDOUT)
        if not wait_ready(socket, proc):
            # a model the worker cannot load is one the hook could not load either: stop now,
            # not at the first iteration that needs the prior
            if proc.poll() is None:
                proc.kill()
            logFile.close()
            with open(self._getExtraPath('worker.log')) as fh:
                tail = ''.join(fh.readlines()[-15:])
            raise RuntimeError('The denoiser worker could not load %s, so the refinement was not '
                               'started. Its log (extra/worker.log) ends with:\n%s'
                               % (modelPath, tail))
        self.info('Denoiser worker ready (pid %d)' % proc.pid)
        return proc, socket

    def _stopDenoiserWorker(self, proc, socket):
        if proc is None:
            return
        from redprior.core.denoiser.worker import stop
        stop(socket)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(os.path.dirname(socket), ignore_errors=True)
