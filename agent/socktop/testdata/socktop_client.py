"""An independent socktop client, on Debian's python3-websockets.

Usage: socktop_client.py URL [--expect-refused]

Sends the requests a socktop client sends and prints one JSON line: what
each reply decoded to. The process list is decoded with a small protobuf
reader written here, from the wire format (no generated code).
"""
import asyncio
import gzip
import json
import struct
import sys

import websockets


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = struct.unpack("<f", buf[i:i + 4])[0], i + 4
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def processes(buf):
    count, rows = 0, []
    for num, _, v in fields(buf):
        if num == 1:
            count = v
        elif num == 2:
            row = {}
            for n, _, x in fields(v):
                row[{1: "pid", 2: "name", 3: "cpu_usage", 4: "mem_bytes"}.get(n, n)] = (
                    x.decode() if n == 2 else x)
            rows.append(row)
    return {"process_count": count, "rows": rows}


def payload(msg):
    """Returns (frame kind, bytes), gunzipping a gzip binary frame."""
    if isinstance(msg, str):
        return "text", msg.encode()
    if msg[:2] == b"\x1f\x8b":
        return "gzip", gzip.decompress(msg)
    return "binary", msg


async def main(url, expect_refused):
    async with websockets.connect(url, max_size=64 << 20) as ws:
        if expect_refused:
            try:
                await ws.send("get_metrics")
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as e:
                print(json.dumps({"refused": True, "code": e.code}))
                return
            print(json.dumps({"refused": False}))
            return
        out = {}
        await ws.send("get_metrics")
        kind, b = payload(await ws.recv())
        out["metrics"] = {"frame": kind, "value": json.loads(b)}
        await ws.send(json.dumps({"type": "disks"}))
        kind, b = payload(await ws.recv())
        out["disks"] = {"frame": kind, "value": json.loads(b)}
        # An unknown request gets no reply and leaves the connection open.
        await ws.send("get_weather")
        await ws.send("get_processes")
        kind, b = payload(await ws.recv())
        out["processes"] = {"frame": kind, "value": processes(b)}
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--expect-refused" in sys.argv[2:]))
