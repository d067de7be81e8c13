"""Switchboard's benchmarks: every performance number in the README comes from here.

``make bench`` runs them all; each script also runs alone (``python -m bench.intake``, ``bench.relay``,
``bench.failover``) and takes ``--smoke`` (tiny sizes, a few seconds: ``make test`` runs that so the
benchmarks never rot). Each prints its tables and writes ``bench/results/<name>.json`` (git-ignored).
None of them is a pass/fail test.
"""
