"""Viewers of the redprior plugin; Scipion discovers only the names exported here."""
from .viewer_simulate import RedPriorSimulateViewer
from .viewer_validate import RedPriorValidateViewer
from .viewer_refine import RedPriorRefineViewer
from .viewer_consensus import RedPriorConsensusViewer
from .viewer_training import (RedPriorTrainingMapsViewer, RedPriorTrainDenoiserViewer,
                              RedPriorTrainingObjectsViewer)
