"""Shared setup of the protocol tests: the shipped model imported and simulated in a project."""
from pwem.protocols import ProtImportPdb

from redprior.core.io.shipped import DEMO_MODEL
from redprior import constants as C
from redprior.protocols import ProtRedPriorSimulate


def importDemoModel(testCls):
    """Import redprior's shipped atomic model (no download) into the test's project."""
    prot = testCls.newProtocol(ProtImportPdb, objLabel='import model',
                               inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
                               pdbFile=DEMO_MODEL, skipChimera=True)
    testCls.launchProtocol(prot)
    return prot


def simulateDemoParticles(testCls, box, pixel, n, snr, label='simulate', **kwargs):
    """Import the shipped model and simulate particles from it (noise given by SNR)."""
    pdb = importDemoModel(testCls)
    sim = testCls.newProtocol(ProtRedPriorSimulate, objLabel=label,
                              inputAtomStruct=pdb.outputPdb, boxSize=box, pixelSize=pixel,
                              numberOfParticles=n, noiseMode=C.NOISE_BY_SNR, snr=snr, **kwargs)
    testCls.launchProtocol(sim)
    return pdb, sim
