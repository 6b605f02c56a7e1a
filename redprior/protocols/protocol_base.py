"""What the RELION-running protocols share: how relion_refine and our hook are started.

The arguments themselves are built by core.relion.command (relion_refine) and
core.prior.exrecon.hook_args (the external-reconstruct program), so the refine protocol,
'training maps' and the quality benchmark run RELION the same way.
"""
import shlex

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
