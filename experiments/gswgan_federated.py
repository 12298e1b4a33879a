"""Federated GS-WGAN (user-level DP) and the DP-FedAvg-GAN baseline.

  python -m experiments.gswgan_federated \
      --config=experiments/configs/gswgan_federated.py:cpu,non_iid \
      --workdir=runs/gswgan_fed_cpu [--config.dp.noise_multiplier=1.0 ...]
"""

from experiments import _main
from jaxtiny.gswgan import federated

if __name__ == "__main__":
  _main.run(federated.train_and_evaluate)
