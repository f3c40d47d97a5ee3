"""The bundled Databricks-compatible SQL warehouse: a development and test tool.

It answers the real `databricks-sql-connector` over Thrift-over-HTTPS, serving Delta tables found under a
root folder (`<catalog>/<schema>/<table>/`). It imports nothing of the product, and the product imports
nothing of it: `zenskar_pipeline_tests/test_stands_alone.py` fails the build if the product ever does.
"""
