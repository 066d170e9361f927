"""Numeric data types and their storage sizes."""

from __future__ import annotations

from enum import StrEnum


class DType(StrEnum):
    INT4 = "int4"
    INT8 = "int8"
    FP8 = "fp8"
    BF16 = "bf16"
    FP16 = "fp16"
    INT32 = "int32"
    FP32 = "fp32"

    @property
    def bytes(self) -> float:
        """Storage size of one element in bytes (int4 packs two per byte)."""
        return _BITS[self] / 8

    @property
    def accumulator(self) -> "DType":
        """The type a matrix unit accumulates products of this type in."""
        return DType.INT32 if self in (DType.INT4, DType.INT8) else DType.FP32


_BITS = {
    DType.INT4: 4, DType.INT8: 8, DType.FP8: 8, DType.BF16: 16,
    DType.FP16: 16, DType.INT32: 32, DType.FP32: 32,
}
