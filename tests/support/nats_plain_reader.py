"""Read one exported run with nats-py and numpy only, from docs/nats.md (no pybrid import):

    python nats_plain_reader.py URL RUN_ID OUT.npz

Writes ``<mac>/samples`` (float64, NaN rows for missing chunks) and ``condition``."""

import asyncio
import json
import struct
import sys

sys.modules["pybrid"] = None  # type: ignore[assignment]  # importing pybrid fails here

import nats  # noqa: E402
import numpy as np  # noqa: E402
from nats.js.api import DeliverPolicy  # noqa: E402

HEADER = struct.Struct("<4sBBHIIH6xdd")
DTYPES = {1: "<f4", 2: "<f8", 3: "<i2", 4: "<u2", 5: "<i1", 6: "<u1", 7: "<i4", 8: "<u4",
          9: "<i8", 10: "<u8"}


async def main(url: str, run_id: str, out: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.subscribe(f"pybrid.*.{run_id}.>", ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    layouts, chunks, end = {}, {}, None
    while end is None:
        msg = await sub.next_msg(timeout=20)
        kind = msg.subject.rsplit(".", 1)[1]
        if kind == "layout":
            body = json.loads(msg.data)
            layouts[body["carrier"]] = body
        elif kind == "chunk":  # one or more records back to back
            at = 0
            while at < len(msg.data):
                magic, flags, code, carrier, number, n, channels, gain, offset = \
                    HEADER.unpack_from(msg.data, at)
                assert magic == b"PBC1"
                dtype = np.dtype(DTYPES[code])
                raw = np.frombuffer(msg.data, dtype, n * channels, at + HEADER.size)
                at += HEADER.size + n * channels * dtype.itemsize
                if flags & 0x01:
                    continue  # the final values
                layout = layouts[carrier]
                if flags & 0x02:
                    gain, offset = np.array(layout["gains"]), np.array(layout["offsets"])
                mac = layout["path"].strip("/").split("/")[0]
                chunks.setdefault(mac, {})[number] = raw.reshape(n, channels) * gain + offset
        elif kind == "end":
            end = json.loads(msg.data)
    await nc.close()
    arrays = {"condition": np.array(end["condition"])}
    for mac, got in chunks.items():
        size = max(v.shape[0] for v in got.values())
        top = max(got)
        rows = top * size + got[top].shape[0]
        samples = np.full((rows, next(iter(got.values())).shape[1]), np.nan)
        for number, values in got.items():
            samples[number * size:number * size + values.shape[0]] = values
        arrays[f"{mac}/samples"] = samples
    np.savez(out, **arrays)


asyncio.run(main(*sys.argv[1:4]))
