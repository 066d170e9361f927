"""The GPU chip kind: its cost models (``engine``, ``gemm``, ``collectives``) and its energy and
area (``power``). The config is ``archsim.config.gpu.GpuConfig``."""
