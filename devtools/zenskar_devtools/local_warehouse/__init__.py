"""The bundled Databricks-compatible SQL warehouse: a development and test tool.

It answers the real `databricks-sql-connector` over Thrift-over-HTTPS, serving Delta tables found under a
root folder (`<catalog>/<schema>/<table>/`). The product code never imports this package.
"""
