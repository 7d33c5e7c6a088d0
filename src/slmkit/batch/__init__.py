"""Batch jobs for data pipelines: OpenAI's files and batches APIs, run inside the server.

lines.py reads and checks an input file, files.py stores uploaded and produced files,
jobs.py holds the jobs' states and resume bookkeeping, runner.py runs them at background
priority. The HTTP routes are in server/openai/batches.py; ``slm batch`` (cli/batch.py)
runs a file against any server without a job.
"""
