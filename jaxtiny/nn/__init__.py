"""Pure init/apply models (flax.linen used functionally) and losses."""

from jaxtiny.nn.lenet import LeNet
from jaxtiny.nn.lenet import cross_entropy
