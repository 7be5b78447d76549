"""Runs across backends: forwarding requests, fanning out and merging replies, coordinating a
run's start, errors and end, and the barrier every carrier passes."""
