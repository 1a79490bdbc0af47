"""Faults a drill injects for real, each undone at the end of its duration, on abort and Ctrl-C."""

from shopserve.drill.faults.base import Fault, FaultContext, build_fault

__all__ = ["Fault", "FaultContext", "build_fault"]
