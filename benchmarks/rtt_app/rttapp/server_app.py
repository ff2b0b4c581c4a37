"""Time sequential send_and_receive round trips to one node for each payload size."""

import json
import statistics
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Measure ``samples`` round trips per payload size; write them as JSON."""
    samples = int(context.run_config["samples"])
    sizes = [int(s) for s in str(context.run_config["payload-bytes"]).split(",")]
    while not list(grid.get_node_ids()):
        time.sleep(0.5)
    node = sorted(grid.get_node_ids())[0]
    results = {}
    for size in sizes:
        payload = np.zeros(size // 4, dtype=np.float32)  # float32: 4 bytes each
        times = []
        for index in range(samples + 1):  # the first one warms up and is dropped
            content = RecordDict(
                {"payload": ArrayRecord([payload]), "meta": ConfigRecord({"i": index})}
            )
            msg = Message(content, dst_node_id=node, message_type="query.echo")
            start = time.perf_counter()
            replies = list(grid.send_and_receive([msg], timeout=120))
            elapsed = time.perf_counter() - start
            if len(replies) != 1 or replies[0].has_error():
                raise RuntimeError(f"round trip {index} failed: {replies}")
            if index:
                times.append(elapsed)
        results[str(size)] = {
            "payload_bytes": size,
            "samples": times,
            "median_s": statistics.median(times),
        }
        print(f"payload {size} B: median {statistics.median(times) * 1000:.1f} ms")
    path = str(context.run_config["result-path"])
    if path:
        Path(path).write_text(json.dumps(results, indent=2))
