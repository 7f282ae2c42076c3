"""Neural-network building blocks: MLP right-hand sides with exact VJP/JVP, losses, Adam."""

from .losses import accuracy, mse_loss, softmax_cross_entropy, sum_squares_loss
from .mlp import ACTIVATIONS, MLP
from .optim import Adam

__all__ = ["MLP", "ACTIVATIONS", "mse_loss", "sum_squares_loss", "softmax_cross_entropy", "accuracy", "Adam"]
