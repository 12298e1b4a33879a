"""Offline datasets and deterministic batch iterators."""

from jaxtiny.data.datasets import ChecksumError
from jaxtiny.data.datasets import DATASETS
from jaxtiny.data.datasets import DatasetError
from jaxtiny.data.datasets import DatasetSpec
from jaxtiny.data.datasets import data_dir
from jaxtiny.data.datasets import load
from jaxtiny.data.datasets import prepare
from jaxtiny.data.iterators import batch_indices
from jaxtiny.data.iterators import batches
from jaxtiny.data.iterators import eval_batches
from jaxtiny.data.iterators import sharded_batches
from jaxtiny.data.iterators import steps_per_epoch
