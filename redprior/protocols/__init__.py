"""Protocols of the redprior plugin; Scipion discovers only the names exported here."""
from .protocol_simulate import ProtRedPriorSimulate
from .protocol_refine import ProtRedPriorRefine
from .protocol_validate import ProtRedPriorValidate
from .protocol_consensus import ProtRedPriorConsensus
from .protocol_training_maps import ProtRedPriorTrainingMaps
from .protocol_train_denoiser import ProtRedPriorTrainDenoiser
from .protocol_bias import ProtRedPriorBiasTest
