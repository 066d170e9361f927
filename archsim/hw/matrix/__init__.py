"""Matrix-unit timing models, one per config kind (systolic.py, cim.py: each imported when a
config of its kind is first built, by build_matrix_unit)."""

from archsim.hw.matrix.base import ArrayTiming, MatmulShape, build_matrix_unit

__all__ = ["ArrayTiming", "MatmulShape", "build_matrix_unit"]
