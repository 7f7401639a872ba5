"""Step 4: add, update and delete an order, as the exercise's three aws commands do."""

from __future__ import annotations

from typing import Any

from orders import dynamodb_client, endpoint, options

KEY = {"email": {"S": "anil@example.com"}, "order_number": {"S": "2023/01/01#1344"}}


def put_order(dynamodb: Any, table: str) -> None:
    dynamodb.put_item(
        TableName=table,
        Item={**KEY, "order_amount": {"N": "234"}, "order_status": {"S": "pending"}},
    )


def ship_order(dynamodb: Any, table: str) -> None:
    dynamodb.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET order_status = :shipped",
        ExpressionAttributeValues={":shipped": {"S": "shipped"}},
    )


def delete_order(dynamodb: Any, table: str) -> None:
    dynamodb.delete_item(TableName=table, Key=KEY)


def change_items(dynamodb: Any, table: str) -> None:
    for step in (put_order, ship_order, delete_order):
        step(dynamodb, table)
        print("done:", step.__name__)


if __name__ == "__main__":
    args = options(__doc__.splitlines()[0]).parse_args()
    change_items(dynamodb_client(endpoint(args)), args.table)
