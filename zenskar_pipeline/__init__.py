"""zenskar-pipeline: exact Delta copies of Databricks Unity Catalog tables for usage-based billing."""
