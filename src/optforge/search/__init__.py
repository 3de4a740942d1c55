"""The discovery engine: regularized evolution of update-rule programs.

``Search(SearchConfig(...)).run()`` returns a :class:`SearchResult` with the
hall of fame, the Pareto front (fitness / length / slots) and the winners'
simplified source. See ``docs/SEARCH.md`` for the algorithm and defaults.
"""

from ..evaluation import WORST, Evaluation, Evaluator, Fitness, Job
from .config import SearchConfig, flags
from .engine import Search
from .fitness import FunctionFitness, Stage, TargetFitness, TrainerFitness
from .mutate import MutationConfig, MutationError, Mutator
from .results import Candidate, SearchResult, Winner, hall_of_fame, pareto_front
from .simplify import simplify

__all__ = [
    "WORST", "Candidate", "Evaluation", "Evaluator", "Fitness", "FunctionFitness",
    "Job", "MutationConfig", "MutationError", "Mutator", "Search",
    "SearchConfig", "SearchResult", "Stage", "TargetFitness", "TrainerFitness", "Winner",
    "flags", "hall_of_fame", "pareto_front", "simplify",
]
