"""Training: PPO with curricula and replay, the kickstart from the geometric controller, distillation,
evaluation, checkpoints, data-parallel runs and the training benchmarks."""
