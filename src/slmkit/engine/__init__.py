"""The worker process: one per loaded model, owner of its weights. Nothing here is imported
by the API process (tests/unit/test_boundaries.py); requests and events cross the pipe as
slmkit/pipe.py's types."""
