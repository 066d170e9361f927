"""archsim: cycle-approximate simulation and design-space exploration of accelerators for
generative-AI inference. Start with ``archsim.api``."""

__version__ = "0.1.0"
