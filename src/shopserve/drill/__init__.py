"""Disaster-recovery drills: real faults against a live deployment under real traffic, measured.

``DrillRunner(load_drill(path), target).run()`` returns a Chaos Toolkit-style journal.
"""

from shopserve.drill.results import Check, DrillStatus, Verdict
from shopserve.drill.runner import DrillRunner
from shopserve.drill.spec import DrillSpec, load_drill, parse_drill
from shopserve.drill.target import DrillLock, DrillTarget

__all__ = ["Check", "DrillLock", "DrillRunner", "DrillSpec", "DrillStatus", "DrillTarget",
           "Verdict", "load_drill", "parse_drill"]
