"""Step 1: commit the NoSQL Workbench model (example-order-model.json) to DynamoDB.

python examples/commit_model.py [--endpoint-url http://localhost:8000]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orders import dynamodb_client, endpoint, options

MODEL = Path(__file__).with_name("example-order-model.json")


def commit_model(dynamodb: Any, model_path: Path = MODEL, table_name: str | None = None) -> str:
    """Create the model's table (and put its sample items); returns the table name."""
    model = json.loads(model_path.read_text())
    (table,) = model["DataModel"]
    name = table_name or table["TableName"]
    keys = table["KeyAttributes"]
    key_schema = [{"AttributeName": keys["PartitionKey"]["AttributeName"], "KeyType": "HASH"}]
    attributes = [dict(keys["PartitionKey"])]
    if "SortKey" in keys:
        key_schema.append({"AttributeName": keys["SortKey"]["AttributeName"], "KeyType": "RANGE"})
        attributes.append(dict(keys["SortKey"]))
    dynamodb.create_table(
        TableName=name,
        KeySchema=key_schema,
        AttributeDefinitions=attributes,
        BillingMode="PROVISIONED",
        ProvisionedThroughput=table["ProvisionedCapacitySettings"]["ProvisionedThroughput"],
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    for item in table.get("TableData", []):
        dynamodb.put_item(TableName=name, Item=item)
    return name


if __name__ == "__main__":
    args = options(__doc__.splitlines()[0]).parse_args()
    print("created table", commit_model(dynamodb_client(endpoint(args)), table_name=args.table))
