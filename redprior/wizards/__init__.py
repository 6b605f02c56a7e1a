"""Wizards of the redprior plugin; Scipion discovers only the names exported here."""
from .wizard_simulate import RedPriorNoiseWizard
