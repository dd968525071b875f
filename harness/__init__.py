"""attnbench's core: the variant interface, registry, inputs, exact baseline and error measures.

``harness`` knows no particular variant; built-ins live in ``variants`` and third-party ones arrive through the
``attnbench.variants`` entry-point group.
"""

from harness.errors import ErrorStats, error_stats
from harness.inputs import Case, Inputs, check_qkv, make_inputs
from harness.measure import MeasureConfig, Measurement, measure_variant
from harness.pattern import PATTERN_KINDS, Pattern, make_pattern
from harness.reference import Reference, ReferenceCache, reference_attention, textbook_attention
from harness.registry import get_variant, list_variants, load_variants_from, register_variant, select_variants
from harness.results_io import load_results
from harness.variant import Variant

__version__ = "0.1.0"

__all__ = [
    "PATTERN_KINDS",
    "Case",
    "ErrorStats",
    "Inputs",
    "MeasureConfig",
    "Measurement",
    "Pattern",
    "Reference",
    "ReferenceCache",
    "Variant",
    "__version__",
    "check_qkv",
    "error_stats",
    "get_variant",
    "list_variants",
    "load_results",
    "load_variants_from",
    "make_inputs",
    "make_pattern",
    "measure_variant",
    "reference_attention",
    "register_variant",
    "select_variants",
    "textbook_attention",
]
