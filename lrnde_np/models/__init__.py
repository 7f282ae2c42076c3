"""Models composing the pieces: a neural ODE layer with any adjoint and regularizer, and the two tasks."""
from .base import Evaluation, StepOutcome
from .mnist import MNISTTask
from .node import ADJOINTS, REGULARIZERS, ForwardPass, NeuralODE, Regularization, SolveFailed
from .spiral import SpiralTask

__all__ = ["NeuralODE", "Regularization", "ForwardPass", "SolveFailed", "REGULARIZERS", "ADJOINTS", "SpiralTask",
           "MNISTTask", "StepOutcome", "Evaluation"]
