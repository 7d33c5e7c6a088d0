"""`slm bench`: measure speed, latency and memory of models and runtimes, side by side."""
