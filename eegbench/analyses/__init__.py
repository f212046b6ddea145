"""Analyses on top of the benchmark: scaling laws and brain similarity.

* :func:`data_scaling`: accuracy against the amount of training data per subject (nested fractions
  of the training images) and against the number of test repetitions averaged, with log-linear
  fits (Banville et al. 2025, "Scaling laws for decoding images from brain activity").
* :func:`backbone_scaling`: accuracy against the vision backbone's parameter count, from existing
  result files, final layer vs validation-selected layer (the Shallow Alignment paper's analysis).
* :func:`rsa`: time-resolved representational similarity between every backbone layer and the
  averaged test responses, with a split-half noise ceiling and a permutation test (as ReAlnet
  scores models by their similarity to EEG).

Each writes an :class:`eegbench.results.AnalysisRecord` into the results store; the leaderboard
shows them as sections of the task's page (:func:`analysis_sections`).
"""

from eegbench.analyses.rsa import RSAResult, rsa
from eegbench.analyses.scaling import BackboneScaling, DataScaling, backbone_scaling, data_scaling
from eegbench.analyses.sections import analysis_sections

__all__ = ["BackboneScaling", "DataScaling", "RSAResult", "analysis_sections", "backbone_scaling", "data_scaling",
           "rsa"]
