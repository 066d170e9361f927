"""Matrix-unit timing models, one per config kind."""

from archsim.hw.matrix import systolic  # noqa: F401  (registers the 'systolic' kind)
from archsim.hw.matrix.base import ArrayTiming, MatmulShape, build_matrix_unit

__all__ = ["ArrayTiming", "MatmulShape", "build_matrix_unit"]
