"""Step 5: delete the sample table."""

from __future__ import annotations

from typing import Any

from orders import dynamodb_client, endpoint, options


def delete_table(dynamodb: Any, table: str) -> None:
    dynamodb.delete_table(TableName=table)
    dynamodb.get_waiter("table_not_exists").wait(TableName=table)


if __name__ == "__main__":
    args = options(__doc__.splitlines()[0]).parse_args()
    delete_table(dynamodb_client(endpoint(args)), args.table)
    print("deleted table", args.table)
