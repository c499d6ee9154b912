"""`deletion-worker bench`: how many deletion requests a deployment carries, measured
against what the broker itself can do on the same machine."""
