"""``ctdenoise adapt``: fine-tune a denoiser on a site's own noisy series, self-supervised, with a guard.

:func:`adapt` runs it (:mod:`ctdenoise.adapt.loop`); the pairs are made by :mod:`ctdenoise.adapt.pairs`, the
guard's no-reference measure is :mod:`ctdenoise.adapt.guard`, the model folder is written by
:mod:`ctdenoise.adapt.model_card`. Docs: docs/adapt.md.
"""

from ctdenoise.adapt.guard import GuardScore, guard_score, refuses
from ctdenoise.adapt.loop import AdaptResult, AdaptSettings, adapt, work_dir_for
from ctdenoise.adapt.pairs import METHODS

__all__ = ["METHODS", "AdaptResult", "AdaptSettings", "GuardScore", "adapt", "guard_score", "refuses", "work_dir_for"]
