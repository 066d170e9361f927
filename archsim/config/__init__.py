"""Hardware configuration: YAML files with units, validated into typed models."""

from archsim.config.loader import load_hardware, parse_overrides
from archsim.config.schema import HardwareConfig

__all__ = ["HardwareConfig", "load_hardware", "parse_overrides"]
