"""Discord voice: connections per server, the per-server player, and the Opus source.

The only package under `bot/` besides the app, tree and CLI that may import discord.
"""
