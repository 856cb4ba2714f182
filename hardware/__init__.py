"""Physical parameter sets, swarm manifests and arenas, stored as YAML data with sources."""
