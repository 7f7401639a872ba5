"""Step 2: enable the table's stream with NEW_AND_OLD_IMAGES.

The same as the exercise's

    aws dynamodb update-table --table-name example-customer-order-table \\
        --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES \\
        --endpoint-url http://localhost:8000
"""

from __future__ import annotations

from typing import Any

from orders import dynamodb_client, endpoint, options


def enable_stream(dynamodb: Any, table_name: str, view_type: str = "NEW_AND_OLD_IMAGES") -> str:
    """Enable the stream; returns its ARN."""
    dynamodb.update_table(
        TableName=table_name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table_name)
    return str(dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"])


if __name__ == "__main__":
    args = options(__doc__.splitlines()[0]).parse_args()
    print("stream enabled:", enable_stream(dynamodb_client(endpoint(args)), args.table))
