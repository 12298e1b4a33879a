"""The reference LeNet classifier: trainer and loader by dataset name."""

from jaxtiny.classifier.reference import ReferenceClassifier
from jaxtiny.classifier.reference import load as load_reference
from jaxtiny.classifier.train import train_and_evaluate
