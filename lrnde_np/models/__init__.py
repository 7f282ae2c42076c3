"""Models composing the pieces: a neural ODE layer with any adjoint and regularizer, a neural SDE layer, and
the tasks."""

from .base import Evaluation, StepOutcome
from .mnist import MNISTTask
from .mnist_sde import MNISTSDETask
from .node import ADJOINTS, REGULARIZERS, ForwardPass, NeuralODE, Regularization, SolveFailed
from .nsde import NeuralSDE, SDEForwardPass
from .spiral import SpiralTask

__all__ = [
    "NeuralODE",
    "NeuralSDE",
    "Regularization",
    "ForwardPass",
    "SDEForwardPass",
    "SolveFailed",
    "REGULARIZERS",
    "ADJOINTS",
    "SpiralTask",
    "MNISTTask",
    "MNISTSDETask",
    "StepOutcome",
    "Evaluation",
]
