"""Errors the warehouse reports the way Databricks does: an error class, a message and an SQLSTATE."""

from __future__ import annotations


class WarehouseError(Exception):
    """A statement failed; the client sees it as `ServerOperationError` with `display_message`."""

    def __init__(self, error_class: str, message: str, sqlstate: str = "42000") -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.sqlstate = sqlstate

    @property
    def display_message(self) -> str:
        return f"[{self.error_class}] {self.message} SQLSTATE: {self.sqlstate}"

    def __str__(self) -> str:
        return self.display_message


def table_not_found(name: str) -> WarehouseError:
    return WarehouseError(
        "TABLE_OR_VIEW_NOT_FOUND",
        f"The table or view `{name}` cannot be found. Verify the spelling and correctness of the schema "
        "and catalog.",
        "42P01",
    )


def parse_error(detail: str) -> WarehouseError:
    return WarehouseError("PARSE_SYNTAX_ERROR", f"Syntax error: {detail}.", "42601")
