"""The names of the files in a run directory (the README's artifact reference)."""

RECORD = "run.json"
OUTPUTS = "outputs.npy"
PARAMS = "params.npz"
STATS = "stats.json"
ACTIVATIONS = "activations.npz"
FIGURE = "activations.png"
STATE = "stats_state.npz"  # a shard's statistics accumulators, for runner.merge

# What a run writes besides Hydra's .hydra/ and the log.
ARTIFACTS = (OUTPUTS, PARAMS, STATS, ACTIVATIONS, FIGURE, STATE)
