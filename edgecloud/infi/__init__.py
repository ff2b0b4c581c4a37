"""InFi: learned input filters that skip or reuse inferences (thesis chapter 3).

A black box ``h`` and a redundancy measure on its outputs (:mod:`.redundancy`)
define which inputs are useless (skip) and which can take a cached result
(reuse). One Siamese filter serves both (:mod:`.siamese`): feature networks per
modality (:mod:`.features`) embed inputs; ``sigmoid(w . |e1 - e2| + b)`` says
whether two inputs share a result, and skip is reuse of the null input's NONE
result. :mod:`.training` fits them on labels the black box produces,
:mod:`.cache` holds reusable results behind an H-KNN lookup,
:mod:`.thresholds` picks operating points for a target accuracy,
:mod:`.serving` puts a model behind them (falling back to the model when the
filter fails) and :mod:`.active` updates a filter online. No flwr import.
"""

from edgecloud.infi.cache import CacheStats, HKNNCache, Lookup, reuse_stream
from edgecloud.infi.features import (
    MODALITIES,
    FeatureNetwork,
    feature_network,
    parameter_count,
)
from edgecloud.infi.redundancy import (
    PairwiseRedundancy,
    Redundancy,
    bounded_regression,
    class_subset,
    confidence_threshold,
    optimal_filter_rate,
    redundant_share,
    unchanged_result,
    zero_count,
)
from edgecloud.infi.serving import FilteredModel, Served
from edgecloud.infi.siamese import InputFilter, null_input
from edgecloud.infi.thresholds import (
    NoOperatingPointError,
    OperatingPoint,
    choose_reuse_threshold,
    choose_skip_threshold,
    choose_threshold,
)
from edgecloud.infi.training import fit_reuse, fit_skip

__all__ = [
    "MODALITIES",
    "CacheStats",
    "FeatureNetwork",
    "FilteredModel",
    "HKNNCache",
    "InputFilter",
    "Lookup",
    "NoOperatingPointError",
    "OperatingPoint",
    "PairwiseRedundancy",
    "Redundancy",
    "Served",
    "bounded_regression",
    "choose_reuse_threshold",
    "choose_skip_threshold",
    "choose_threshold",
    "class_subset",
    "confidence_threshold",
    "feature_network",
    "fit_reuse",
    "fit_skip",
    "null_input",
    "optimal_filter_rate",
    "parameter_count",
    "redundant_share",
    "reuse_stream",
    "unchanged_result",
    "zero_count",
]
