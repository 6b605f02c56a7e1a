"""Wizards of the redprior plugin; Scipion discovers only the names exported here."""
from .wizard_simulate import RedPriorNoiseWizard
from .wizard_refine import (RedPriorCwThresholdsWizard, RedPriorInitialLowpassWizard,
                            RedPriorMaskDiameterWizard)
