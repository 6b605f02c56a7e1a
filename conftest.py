"""Root conftest: Scipion's environment must exist before pyworkflow/pwem/redprior import."""
import redprior_env

redprior_env.setup_environment()
