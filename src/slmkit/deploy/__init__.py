"""`slm deploy`: container, Compose and Kubernetes files for a chosen model."""
