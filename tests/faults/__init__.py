"""Fault injection: "nothing lost, nothing doubled" while processes, NATS and OpenAI fail.

Each scenario runs real nats-server processes, the emulator (playing OpenAI) in the test process, and
Switchboard services as subprocesses, injects one kind of failure (kill -9, SIGSTOP, a NATS restart or
leader loss, a reset sideband, a slow or failing OpenAI), then judges what a user would see — the events
on the bus and the requests OpenAI received — and writes one row to the report
(`python -m tests.faults.table`). Quick scenarios run in `make test`; `make faults` adds the long
variants (marked ``fault_full``) and prints the table.
"""
