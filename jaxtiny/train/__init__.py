"""Functional training core: state, checkpoints, metrics, plots, sharding."""

from jaxtiny.train import checkpoint
from jaxtiny.train import distributed
from jaxtiny.train import metrics
from jaxtiny.train import plots
from jaxtiny.train.state import TrainState
from jaxtiny.train.state import create_train_state
from jaxtiny.train.state import split_streams
