"""The bounded local history of every cycle: what the status page draws and replay re-runs."""
