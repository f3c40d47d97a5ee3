"""Result-set metadata as the connector reads it: Hive/Thrift column types plus the Arrow schema."""

from __future__ import annotations

from databricks.sql.thrift_api.TCLIService import ttypes as t

from zenskar_devtools.local_warehouse.statement import StatementResult

_OK = t.TStatus(statusCode=t.TStatusCode.SUCCESS_STATUS)

_TYPE_IDS = {
    "BOOLEAN": t.TTypeId.BOOLEAN_TYPE,
    "TINYINT": t.TTypeId.TINYINT_TYPE,
    "SMALLINT": t.TTypeId.SMALLINT_TYPE,
    "INT": t.TTypeId.INT_TYPE,
    "BIGINT": t.TTypeId.BIGINT_TYPE,
    "FLOAT": t.TTypeId.FLOAT_TYPE,
    "DOUBLE": t.TTypeId.DOUBLE_TYPE,
    "STRING": t.TTypeId.STRING_TYPE,
    "BINARY": t.TTypeId.BINARY_TYPE,
    "DATE": t.TTypeId.DATE_TYPE,
    "TIMESTAMP": t.TTypeId.TIMESTAMP_TYPE,
    "TIMESTAMP_NTZ": t.TTypeId.TIMESTAMP_TYPE,
    "DECIMAL": t.TTypeId.DECIMAL_TYPE,
    "ARRAY": t.TTypeId.ARRAY_TYPE,
    "MAP": t.TTypeId.MAP_TYPE,
    "STRUCT": t.TTypeId.STRUCT_TYPE,
    "VOID": t.TTypeId.NULL_TYPE,
    "NULL": t.TTypeId.NULL_TYPE,
    "INTERVAL": t.TTypeId.INTERVAL_DAY_TIME_TYPE,
}


def type_entry(databricks_type: str) -> t.TTypeDesc:
    """The Thrift type of a Databricks type name such as `DECIMAL(18,6)` or `ARRAY<STRING>`."""
    base = databricks_type.split("(", 1)[0].split("<", 1)[0].strip().upper()
    entry = t.TPrimitiveTypeEntry(type=_TYPE_IDS.get(base, t.TTypeId.STRING_TYPE))
    if base == "DECIMAL":
        precision, scale = (int(x) for x in databricks_type[databricks_type.index("(") + 1 : -1].split(","))
        entry.typeQualifiers = t.TTypeQualifiers(
            qualifiers={
                "precision": t.TTypeQualifierValue(i32Value=precision),
                "scale": t.TTypeQualifierValue(i32Value=scale),
            }
        )
    return t.TTypeDesc(types=[t.TTypeEntry(primitiveEntry=entry)])


def result_set_metadata(result: StatementResult, lz4: bool) -> t.TGetResultSetMetadataResp:
    columns = [
        t.TColumnDesc(columnName=c.name, typeDesc=type_entry(c.databricks_type), position=i + 1, comment="")
        for i, c in enumerate(result.columns)
    ]
    return t.TGetResultSetMetadataResp(
        status=_OK,
        schema=t.TTableSchema(columns=columns),
        resultFormat=t.TSparkRowSetType.ARROW_BASED_SET,
        lz4Compressed=lz4,
        arrowSchema=result.schema.serialize().to_pybytes(),
        isStagingOperation=False,
    )
