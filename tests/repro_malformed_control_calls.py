"""Reproduction: a 200 answer whose body is not JSON, to DescribeStream or GetShardIterator,
stops the consumer with a bare KeyError (found by the chaos soak, --malformed-everywhere).

    python tests/repro_malformed_control_calls.py      # exits 1 while the bug is there

botocore parses a non-JSON 200 body of these operations as ``{}`` without raising (its JSON
parser falls back to ``{"message": body}``, which has none of the output's members), so
``StreamsAPI.describe_stream`` / ``get_shard_iterator`` index a missing key. GetRecords does
not have the problem: its body goes through ddbstreams' own page decoder, which raises
MalformedResponseError (a transient ServerError, retried). Expected for the other calls: the
same MalformedResponseError, retried like any server error, and the consumer goes on.
"""

from __future__ import annotations

import os
import sys

from ddbstreams import ConsumerSettings, MalformedResponseError, StreamConsumer
from ddbstreams._client import StreamsAPI, build_boto3_clients
from ddbstreams.testing import RecordCollector, SimulatorServer, StreamSimulator


def main() -> int:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "repro")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "repro")
    sim = StreamSimulator()
    sim.insert({"email": "a@example.com", "order_number": "1"})
    shard_id = sim.open_shard_ids()[0]
    failures = 0
    with SimulatorServer(sim, seed=1) as server:
        streams, dynamodb = build_boto3_clients(endpoint_url=server.url, region_name="us-east-1")
        api = StreamsAPI(streams, dynamodb, attempts=1)
        for operation, call in [
            ("DescribeStream", lambda: api.describe_stream(sim.stream_arn)),
            (
                "GetShardIterator",
                lambda: api.get_shard_iterator(sim.stream_arn, shard_id, "TRIM_HORIZON", None),
            ),
        ]:
            server.set_faults(malformed={operation: 1.0})
            try:
                call()
                print(f"{operation}: no error at all")
                failures += 1
            except MalformedResponseError:
                print(f"{operation}: MalformedResponseError (expected)")
            except Exception as exc:
                print(f"{operation}: {type(exc).__name__}: {exc}  <-- BUG")
                failures += 1

        # The consumer: every GetShardIterator answered with garbage. Expected: it keeps
        # retrying (a transient error) until stopped; with the bug it dies at once.
        server.set_faults(malformed={"GetShardIterator": 1.0})
        collector = RecordCollector()
        consumer = StreamConsumer(
            collector,
            stream_arn=sim.stream_arn,
            endpoint_url=server.url,
            region_name="us-east-1",
            settings=ConsumerSettings(poll_interval=0.01, handler_retry_initial=0.01),
        )
        consumer.start()
        died = consumer.wait(3)  # returns early only if the consumer ended
        try:
            consumer.stop(5)
            print(f"consumer: {'ended without error' if died else 'still retrying after 3 s'}")
            failures += died
        except Exception as exc:
            print(f"consumer: died with {type(exc).__name__}: {exc}  <-- BUG")
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
