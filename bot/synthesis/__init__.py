"""From a checked request to audio, with no Discord: the Segmind client, pacing and retries,
cache and coalescing, usage, and the one request pipeline every way of asking goes through.
"""
