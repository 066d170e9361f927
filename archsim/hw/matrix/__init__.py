"""Matrix-unit timing models, one per config kind."""

from archsim.hw.matrix import cim, systolic  # noqa: F401  (register the kinds)
from archsim.hw.matrix.base import ArrayTiming, MatmulShape, build_matrix_unit

__all__ = ["ArrayTiming", "MatmulShape", "build_matrix_unit"]
