"""What the RELION-running protocols share: how relion_refine and our hook are started.

The arguments themselves are built by core.relion.command (relion_refine) and
core.prior.options.hook_args (the external-reconstruct program), so the refine protocol,
'training maps' and the quality benchmark run RELION the same way.
"""
import shlex

from redprior import Plugin
from redprior import constants as C


class RelionRunnerMixin:
    """Runs relion_refine(_mpi) with our external-reconstruct program as RELION's hook."""

    def _runRelionRefine(self, args, hookArgs, mpi, cwd=None):
        """args: relion_refine arguments (list); hookArgs: redprior_exrecon options or None."""
        from redprior.core.prior.options import hook_command

        env = Plugin.getEnviron()
        if hookArgs is not None:
            env[C.RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE] = hook_command(hookArgs)
            self.info('External reconstruct: %s' % env[C.RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE])
        name = C.RELION_REFINE_MPI if mpi > 1 else C.RELION_REFINE
        program = Plugin.getRelionProgram(name) or name
        self.runJob(program, ' '.join(shlex.quote(a) for a in args), env=env, cwd=cwd,
                    numberOfMpi=mpi, numberOfThreads=1)

    def _startDenoiserWorker(self, modelPath, gpu=None):
        """Start the denoiser worker (TensorFlow loaded once for the whole refinement).

        Returns (process, socket), (None, None) without a model. A model the worker cannot
        load is one the hook could not load either: the step stops now, with the worker's
        log, not at the first iteration that needs the prior. gpu: GPU ids for the worker
        ('0', '0,1'); None: the CPU only. The device it found is repeated in this log.
        """
        if not modelPath:
            return None, None
        from redprior.core.denoiser import worker
        log = self._getExtraPath('worker.log')
        proc, socket = worker.start(modelPath, log, gpu=gpu)
        self.info('Denoiser worker ready (pid %d); %s' % (proc.pid, worker.logged_device(log)))
        return proc, socket

    def _stopDenoiserWorker(self, proc, socket):
        from redprior.core.denoiser import worker
        worker.shutdown(proc, socket)
