"""The fleet inventory: Nornir files, target selection, secret references and platforms."""
