"""Switchboard's operator console: live calls, a call's timeline and transcript, actions, in the browser."""
