"""Record a golden event log: run the whole system locally, place scripted calls, dump the CALLS stream.

    .venv/bin/python -m tests.golden.record tests/golden/logs/NAME.jsonl

Each line is one stored message's payload, byte for byte, in stream order. Golden logs are recorded once
and never rewritten: they are the "old logs" that must still replay after the event schemas change.
After recording, write the expected projections with ``python -m tests.golden.expect``, and read them
before committing: the expectation is what a person checked, not whatever the code produced.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer
from switchboard.shared.bus import Bus
from switchboard.shared.config import Settings
from tests.waiting import eventually


async def record(out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="switchboard-golden-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        await server.start()
        settings = Settings(
            nats_url=server.url, emulator_port=0, ingress_port=0, ingress_host="127.0.0.1", worker_name="w"
        )
        system = LocalSystem(settings, data_dir=Path(tmp), workers=2, pace=0.02)
        bus = await Bus.connect(server.url, name="golden", give_up_after_s=5)
        try:
            await system.start()
            emulator = system.emulator
            assert emulator is not None
            emulator.faults.add("accept", status=404, code="call_id_not_found", times=1)
            gone = emulator.place_call("+14155550109", "+18005550100", script="short")
            await eventually(lambda: bus.last_event(gone, "ended"), timeout=20, what="the gone call ended")
            placed = [
                emulator.place_call("+14155550101", "+18005550100", script="default"),
                emulator.place_call("+19005550000", "+18005550100"),
                emulator.place_call("+14155550102", "+18005550199", script="hold"),
                emulator.place_call("+14155550103", "+18005550100", script="dtmf"),
                emulator.place_call("+14155550104", "+18005550100", script="order_lookup"),
                emulator.place_call("+442071838750", "+442071838751"),
            ]

            async def all_ended() -> bool:
                for call_id in [gone, *placed]:
                    if await bus.last_event(call_id, "ended") is None:
                        return False
                return True

            await eventually(all_ended, timeout=30, what="every call has ended")
            await system.stop()
            info = await bus.js.stream_info("CALLS")
            lines: list[bytes] = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await bus.js.get_msg("CALLS", seq)
                assert msg.data is not None
                lines.append(msg.data)
        finally:
            await bus.close()
            await system.stop()
            await server.stop()
    await asyncio.to_thread(_write, out, lines)
    print(f"{len(lines)} events of {1 + len(placed)} calls written to {out}")
    return 0


def _write(out: Path, lines: list[bytes]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(line + b"\n" for line in lines))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(asyncio.run(record(Path(sys.argv[1]))))
